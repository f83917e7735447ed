// The worker process type: app.json's formation starts one. It only says it is alive.
'use strict';

console.log(`worker ${process.env.DYNO || 'local'} started`);
const timer = setInterval(() => console.log('worker: still here'), 60_000);
process.on('SIGTERM', () => {
  clearInterval(timer);
  process.exit(0);
});
