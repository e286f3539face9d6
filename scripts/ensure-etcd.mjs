// Makes sure an `etcd` binary is available for the cluster tests (npm test runs this first; CI too).
// Finds etcd on PATH (or IMS_ETCD_BIN); when missing, installs Debian's etcd-server if it can (root
// with apt-get), otherwise stops with a one-line instruction. Likewise libfaketime (Debian's faketime,
// or IMS_FAKETIME_LIB), which the chaos suite uses to step a node's wall clock.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return null;
}

function aptInstall(pkg) {
  const run = () =>
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  try {
    run();
  } catch {
    execFileSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'] });
    run();
  }
}

const canApt = () => typeof process.getuid === 'function' && process.getuid() === 0 && onPath('apt-get');

const FAKETIME_LIBS = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1',
  '/usr/lib/faketime/libfaketimeMT.so.1',
];
const faketimeLib = () => [process.env.IMS_FAKETIME_LIB, ...FAKETIME_LIBS].find((f) => f && existsSync(f));

function version(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? (/etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? 'unknown') : null;
}

const explicit = process.env.IMS_ETCD_BIN;
let bin = explicit ?? onPath('etcd');
if (!bin) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root && onPath('apt-get')) {
    console.log('ensure-etcd: etcd not found; installing Debian package etcd-server');
    try {
      execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'etcd-server'], {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch {
      execFileSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'] });
      execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'etcd-server'], {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    }
    bin = onPath('etcd');
  }
}
const v = bin ? version(bin) : null;
if (!bin || !v) {
  console.error(
    "ensure-etcd: the cluster tests need etcd 3.4+: install Debian's etcd-server (apt-get install etcd-server) " +
      'or put an etcd binary on PATH (or set IMS_ETCD_BIN), then run npm test again',
  );
  process.exit(1);
}
console.log(`ensure-etcd: ${bin} (etcd ${v})`);

let faketime = faketimeLib();
if (!faketime && canApt()) {
  console.log('ensure-etcd: libfaketime not found; installing Debian package faketime');
  aptInstall('faketime');
  faketime = faketimeLib();
}
if (!faketime) {
  console.error(
    "ensure-etcd: the chaos tests need libfaketime: install Debian's faketime (apt-get install faketime) " +
      'or set IMS_FAKETIME_LIB to libfaketimeMT.so.1, then run npm test again',
  );
  process.exit(1);
}
console.log(`ensure-etcd: ${faketime}`);
