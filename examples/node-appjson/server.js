// node-appjson: example app for paas's app.json support. Node's http module only.
// GET / answers $GREETING (an app.json default), GET /health answers `ok` (the app.json
// healthcheck), and the instance name shows which of the two web instances answered.
'use strict';

const http = require('http');

const port = Number(process.env.PORT || 5000);
const greeting = process.env.GREETING || 'Hello from node-appjson';

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  let status = 200;
  let body;
  if (path === '/') {
    body = `${greeting} (${process.env.DYNO || 'local'}; secret set: ${Boolean(process.env.SESSION_SECRET)})\n`;
  } else if (path === '/health') {
    body = 'ok\n';
  } else {
    status = 404;
    body = 'not found\n';
  }
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    console.log(`${sig} received, exiting`);
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  });
}

server.listen(port, '0.0.0.0', () => console.log(`node-appjson listening on 0.0.0.0:${port}`));
