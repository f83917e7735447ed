// The scripts app.json names: `node tasks.js migrate|seed|announce|report`. Each prints what
// it would do; a real app would migrate a database, load seed data, call a chat webhook...
'use strict';

const task = process.argv[2];
const what = {
  migrate: 'predeploy: migrating (runs on the new release before it goes live; failing stops the deploy)',
  seed: 'postdeploy (first deploy only): loading seed data',
  announce: `postdeploy: ${process.env.DYNO} deployed; would tell ${process.env.ADMIN_EMAIL || 'nobody'}`,
  report: `cron: report at ${new Date().toISOString()}`,
}[task];
if (!what) {
  console.error(`unknown task '${task}': use migrate, seed, announce or report`);
  process.exit(2);
}
console.log(what);
