// node-express: example Express app for paas (nodejs buildpack, default `web: npm start`).
// Change VERSION and deploy again to see a new release.
'use strict';
const express = require('express');

const NAME = 'node-express';
const VERSION = 'v1';
const port = Number(process.env.PORT) || 5000;

const app = express();
app.disable('x-powered-by');

app.use((req, res, next) => {
  res.on('finish', () => console.log(`${req.method} ${req.originalUrl} ${res.statusCode}`));
  next();
});

app.get('/', (req, res) => {
  res.type('text/plain').send(`Hello from ${NAME} ${VERSION} (express ${require('express/package.json').version})\n`);
});

app.get('/health', (req, res) => {
  res.type('text/plain').send('ok\n');
});

app.use((req, res) => {
  res.status(404).type('text/plain').send('not found\n');
});

const server = app.listen(port, '0.0.0.0', () => {
  console.log(`${NAME} ${VERSION} listening on 0.0.0.0:${port}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.log(`${signal} received, exiting`);
    server.close();
    process.exit(0);
  });
}
