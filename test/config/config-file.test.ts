import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, parseConfigText } from '../../src/config/index.js';
import { removeDir, tempDir } from '../support/fixtures.js';
import { MAIN_JS, startServer } from '../support/server-process.js';

const GOOD = ['rpc_listen=127.0.0.1:13333', 'storage_root=./data', 'sync_listen=:13334', 'kefu_appid=0'];

describe('config file', () => {
  it('min_insync_replicas: 0 by default, 1 by default in cluster mode, 0 there only when said', () => {
    assert.equal(parseConfigText(GOOD.join('\n'), 'x.cfg').min_insync_replicas, 0);
    const cluster = [...GOOD, 'etcd_endpoints=127.0.0.1:2379'];
    assert.equal(parseConfigText(cluster.join('\n'), 'x.cfg').min_insync_replicas, 1);
    assert.equal(
      parseConfigText([...cluster, 'min_insync_replicas=0'].join('\n'), 'x.cfg').min_insync_replicas,
      0,
    );
    assert.equal(
      parseConfigText([...cluster, 'min_insync_replicas=2'].join('\n'), 'x.cfg').min_insync_replicas,
      2,
    );
  });

  it('parses keys, comments and defaults into a typed config', () => {
    const c = parseConfigText(
      ['# comment', '', ...GOOD, 'limit = 50', 'master_address=10.0.0.1:13334', 'durability=interval'].join(
        '\n',
      ),
      'x.cfg',
    );
    assert.equal(c.rpc_listen, '127.0.0.1:13333');
    assert.equal(c.kefu_appid, 0n);
    assert.equal(c.limit, 50);
    assert.equal(c.group_limit, 0);
    assert.equal(c.durability, 'interval');
    assert.equal(c.isSlave, true);
    assert.equal(c.block_size, 128 * 1024 * 1024);
    assert.equal(c.max_frame_bytes, 48 * 1024 * 1024);
    assert.equal(c.max_pending_bytes, 256 * 1024 * 1024);
    assert.equal(c.max_connections, 10000);
    assert.equal(c.checksum_recheck_s, 30);
    assert.equal(c.tls_cert, undefined);
    assert.equal(
      parseConfigText([...GOOD, 'checksum_recheck_s=0'].join('\n'), 'x.cfg').checksum_recheck_s,
      0,
    );
  });

  const bad: [string, string[], RegExp][] = [
    ['missing required key', GOOD.slice(1), /x\.cfg: required key "rpc_listen" is missing/],
    ['non-integer', [...GOOD, 'limit=ten'], /x\.cfg:5: key "limit": "ten" is not an integer/],
    ['unknown key', [...GOOD, 'limt=10'], /x\.cfg:5: unknown key "limt"/],
    ['no equals sign', [...GOOD, 'limit'], /x\.cfg:5: expected key=value/],
    ['duplicate', [...GOOD, 'limit=1', 'limit=2'], /x\.cfg:6: key "limit" is set twice \(first on line 5\)/],
    [
      'bad address',
      ['rpc_listen=nowhere', ...GOOD.slice(1)],
      /x\.cfg:1: key "rpc_listen": rpc_listen must be host:port/,
    ],
    [
      'bad netrpc address',
      [...GOOD, 'netrpc_listen=13300'],
      /x\.cfg:5: key "netrpc_listen": netrpc_listen must be host:port/,
    ],
    ['range', [...GOOD, 'limit=0'], /x\.cfg:5: key "limit": limit must be at least 1/],
    [
      'negative recheck window',
      [...GOOD, 'checksum_recheck_s=-1'],
      /x\.cfg:5: key "checksum_recheck_s": checksum_recheck_s must be 0 \(every read checked\) or more/,
    ],
    [
      'enum',
      [...GOOD, 'durability=maybe'],
      /x\.cfg:5: key "durability": durability must be sync or interval/,
    ],
    [
      'int64 overflow',
      [...GOOD.slice(0, 3), 'kefu_appid=9223372036854775808'],
      /x\.cfg:4: key "kefu_appid": .* out of the int64 range/,
    ],
    [
      'budget below the frame size',
      [...GOOD, 'max_frame_bytes=1000000', 'max_pending_bytes=500000'],
      /x\.cfg:6: key "max_pending_bytes": 500000 is below max_frame_bytes \(1000000\)/,
    ],
    [
      'frame size too small',
      [...GOOD, 'max_frame_bytes=100'],
      /key "max_frame_bytes": max_frame_bytes must be at least 65536/,
    ],
    [
      'certificate without key',
      [...GOOD, 'tls_cert=/x.crt'],
      /x\.cfg:5: key "tls_cert" is set but "tls_key" is not/,
    ],
    [
      'advertised address without a host',
      [...GOOD, 'advertise_rpc=:13333'],
      /x\.cfg:5: key "advertise_rpc": advertise_rpc must be host:port \(with a host\)/,
    ],
    [
      'advertised sync address without a port',
      [...GOOD, 'advertise_sync=10.0.0.1'],
      /x\.cfg:5: key "advertise_sync": advertise_sync must be host:port/,
    ],
    [
      'peer sync address list without a node name',
      [...GOOD, 'peer_sync_addresses=a=10.0.0.1:1,10.0.0.2:2'],
      /x\.cfg:5: key "peer_sync_addresses": peer_sync_addresses must be node=host:port\[,node=host:port…\]/,
    ],
    [
      'CA without certificate',
      [...GOOD, 'tls_ca=/ca.crt'],
      /x\.cfg:5: key "tls_ca" needs tls_cert and tls_key/,
    ],
  ];
  it('reads advertised addresses and the peer sync address list', () => {
    const c = parseConfigText(
      [
        ...GOOD,
        'advertise_rpc=proxy.local:4001',
        'advertise_sync=[::1]:4002',
        'advertise_http=10.0.0.9:4003',
        'peer_sync_addresses=n1=127.0.0.1:5001, n2:x=proxy.local:5002',
      ].join('\n'),
      'x.cfg',
    );
    assert.equal(c.advertise_rpc, 'proxy.local:4001');
    assert.equal(c.advertise_sync, '[::1]:4002');
    assert.equal(c.advertise_http, '10.0.0.9:4003');
    assert.deepEqual(
      [...c.peerSyncAddresses],
      [
        ['n1', '127.0.0.1:5001'],
        ['n2:x', 'proxy.local:5002'],
      ],
    );
    assert.equal(parseConfigText(GOOD.join('\n'), 'x.cfg').peerSyncAddresses.size, 0);
  });

  for (const [name, lines, re] of bad) {
    it(`refuses a ${name}, naming the key and line`, () => {
      assert.throws(
        () => parseConfigText(lines.join('\n'), 'x.cfg'),
        (e: Error) => e instanceof ConfigError && re.test(e.message),
      );
    });
  }
});

describe('the ims command', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  it('exits 2 on a bad config line, before touching storage', () => {
    const dir = tempDir();
    dirs.push(dir);
    const cfg = path.join(dir, 'bad.cfg');
    fs.writeFileSync(
      cfg,
      [...GOOD.map((l) => l.replace('./data', path.join(dir, 'data'))), 'group_limit=-x'].join('\n'),
    );
    const r = spawnSync(process.execPath, [MAIN_JS, cfg], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /bad\.cfg:5: key "group_limit": "-x" is not an integer/);
    assert.equal(fs.existsSync(path.join(dir, 'data')), false, 'storage untouched');
  });

  it('prints the version banner and usage with no argument and no default config', () => {
    const dir = tempDir();
    dirs.push(dir);
    const r = spawnSync(process.execPath, [MAIN_JS], { cwd: dir, encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stdout, /Version: +\d+\.\d+\.\d+/);
    assert.match(r.stdout, /Node version: v\d+/);
    assert.match(r.stdout, /Git commit: +\S+/);
    assert.match(r.stdout, /usage: ims config/);
  });

  it('a second server on the same data folder refuses to start, naming the holder pid', async () => {
    const first = await startServer({ http: false });
    try {
      const second = await startServer({ dataDir: first.dataDir, http: false, waitReady: false });
      const exit = await second.waitExit();
      assert.equal(exit.code, 1);
      assert.match(second.logText(), new RegExp(`in use by ims pid ${first.proc.pid}`));
    } finally {
      await first.stop();
    }
  });
});
