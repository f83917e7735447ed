// node-hello: example Node.js app for paas (nodejs buildpack, default `web: npm start`).
// Change VERSION and deploy again to see a new release.
'use strict';
const http = require('http');
const ms = require('ms');

const NAME = 'node-hello';
const VERSION = 'v1';
const port = Number(process.env.PORT) || 5000;
const started = Date.now();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  let status = 200;
  let body;
  if (url.pathname === '/') {
    body = `Hello from ${NAME} ${VERSION} (up ${ms(Date.now() - started)})\n`;
  } else if (url.pathname === '/health') {
    body = 'ok\n';
  } else {
    status = 404;
    body = 'not found\n';
  }
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(req.method === 'HEAD' ? undefined : body);
  console.log(`${req.method} ${req.url} ${status}`);
});

server.listen(port, '0.0.0.0', () => {
  console.log(`${NAME} ${VERSION} listening on 0.0.0.0:${port}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.log(`${signal} received, exiting`);
    server.close();
    process.exit(0);
  });
}
