// Preloaded with --import into a process to be profiled: SIGWINCH starts the V8 CPU profiler (so the
// warm-up is left out) and SIGUSR2 writes the profile to $IMS_BENCH_PROFILE_OUT. A server stopped by a
// signal would not write one with --cpu-prof.
import * as fs from 'node:fs';
import { Session } from 'node:inspector';

const out = process.env.IMS_BENCH_PROFILE_OUT;
if (out) {
  const session = new Session();
  session.connect();
  const post = (method, params = {}) =>
    new Promise((resolve, reject) =>
      session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))),
    );
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 200 });
  process.on('SIGWINCH', () => {
    void post('Profiler.start');
  });
  process.on('SIGUSR2', () => {
    void post('Profiler.stop').then(({ profile }) => {
      fs.writeFileSync(out, JSON.stringify(profile));
      console.log(`cpu profile written to ${out}`);
    });
  });
}
