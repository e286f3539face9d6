/**
 * The Node version the package names is the one it runs on: every production dependency admits it
 * (file-type 22, which @nestjs/common pulls, wants Node 22: it is overridden to 21, which @nestjs/common's
 * only use of it still works with), and main.ts refuses an older Node with one line.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { FileTypeValidator } from '@nestjs/common';
import { MIN_NODE, nodeVersionProblem } from '../../src/node-version.js';
import { REPO_ROOT } from '../support/fixtures.js';

type Version = [number, number, number];

function parse(text: string): { v: Version; parts: number } {
  const nums = text
    .replace(/^v/, '')
    .split('.')
    .filter((p) => /^\d+$/.test(p))
    .map(Number);
  return { v: [nums[0] ?? 0, nums[1] ?? 0, nums[2] ?? 0], parts: nums.length };
}

const cmp = (a: Version, b: Version) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** Whether `version` satisfies an npm `engines` range (the forms the lock file holds). */
function satisfies(version: string, range: string): boolean {
  const have = parse(version).v;
  return range.split('||').some((alternative) =>
    alternative
      .trim()
      .replace(/(>=|<=|>|<|=|\^|~)\s+/g, '$1')
      .split(/\s+/)
      .filter((c) => c !== '' && c !== '*' && c !== 'x')
      .every((comparator) => {
        const [, op, rest] = /^(>=|<=|>|<|=|\^|~)?(.*)$/.exec(comparator)!;
        const { v, parts } = parse(rest);
        const next = (i: number): Version => (i === 0 ? [v[0] + 1, 0, 0] : [v[0], v[1] + 1, 0]);
        switch (op) {
          case '>=':
            return cmp(have, v) >= 0;
          case '>':
            return cmp(have, v) > 0;
          case '<':
            return cmp(have, v) < 0;
          case '<=':
            return cmp(have, v) <= 0;
          case '^':
            return cmp(have, v) >= 0 && cmp(have, next(v[0] === 0 ? 1 : 0)) < 0;
          case '~':
            return cmp(have, v) >= 0 && cmp(have, next(parts === 1 ? 0 : 1)) < 0;
          default:
            // A bare version: partial ("20") is the whole range of it, full is exact.
            return parts === 3 ? cmp(have, v) === 0 : cmp(have, v) >= 0 && cmp(have, next(parts - 1)) < 0;
        }
      }),
  );
}

describe('supported Node version', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
    engines: { node: string };
  };

  it('the range check reads the forms the lock file uses', () => {
    assert.ok(satisfies('20.19.0', '^20.19.0 || ^22.12.0 || >=24.0.0'));
    assert.ok(!satisfies('22.11.0', '^20.19.0 || ^22.12.0 || >=24.0.0'));
    assert.ok(satisfies('20.19.0', '>= 20.19.0'));
    assert.ok(satisfies('20.19.0', '18 || 20 || >=22'));
    assert.ok(!satisfies('21.0.0', '18 || 20 || >=22'));
    assert.ok(!satisfies('20.19.0', '>=22'));
    assert.ok(!satisfies('20.19.0', '^22.22.3 || ^24.15.0 || >=26.0.0'));
    assert.ok(satisfies('20.19.0', '>=23.5.0 || ^22.13.0 || ^20.17.0'));
  });

  it(`package.json's engines and the start-up check name the same version (${MIN_NODE})`, () => {
    assert.equal(pkg.engines.node, `>=${MIN_NODE}`);
  });

  it('every production dependency admits that Node and this one', () => {
    const lock = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { version?: string; dev?: boolean; engines?: { node?: string } }>;
    };
    const refusing = Object.entries(lock.packages)
      .filter(([where, p]) => where !== '' && !p.dev && p.engines?.node)
      .filter(
        ([, p]) => !satisfies(MIN_NODE, p.engines!.node!) || !satisfies(process.version, p.engines!.node!),
      )
      .map(([where, p]) => `${where.replace(/^.*node_modules\//, '')}@${p.version}: node ${p.engines!.node}`);
    assert.deepEqual(refusing, []);
  });

  it("@nestjs/common's file-type check works with the overridden file-type on this Node", async () => {
    // A 1×1 PNG: the validator loads file-type and reads the magic number (false if it failed to load).
    const png = Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
      'base64',
    );
    const validator = new FileTypeValidator({ fileType: 'image/png' });
    assert.equal(await validator.isValid({ mimetype: 'image/png', size: png.length, buffer: png }), true);
    const text = Buffer.from('not an image at all, just text');
    assert.equal(await validator.isValid({ mimetype: 'image/png', size: text.length, buffer: text }), false);
  });

  it('an older Node is refused in one line naming both versions', () => {
    assert.equal(
      nodeVersionProblem('v20.18.3'),
      `ims needs Node ${MIN_NODE} or newer; this is Node v20.18.3`,
    );
    assert.match(nodeVersionProblem('v18.20.4')!, /needs Node 20\.19\.0 or newer/);
    assert.equal(nodeVersionProblem('v20.19.0'), null);
    assert.equal(nodeVersionProblem('v22.0.0'), null);
    assert.equal(nodeVersionProblem(process.version), null);
  });
});
