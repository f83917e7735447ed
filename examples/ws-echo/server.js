// ws-echo: test/demo app for WebSockets through the paas router (nodejs buildpack, default
// `web: npm start`, no dependencies: a minimal RFC 6455 server on node's http and crypto).
// GET / answers `ws-echo v1` (change VERSION and deploy again to see a new release), GET /health
// answers `ok`. GET /ws upgrades to a WebSocket that echoes text and binary messages (fragmented
// ones reassembled), answers ping with pong and close with close; GET /ws?prefix=X prepends X to
// echoed text messages, so a test can tell two releases or instances apart.
'use strict';
const http = require('http');
const crypto = require('crypto');

const NAME = 'ws-echo';
const VERSION = 'v1';
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_MESSAGE = 16 * 1024 * 1024;
const port = Number(process.env.PORT) || 5000;
const sockets = new Set(); // open WebSockets
let nextId = 1;
let stopping = false;
const exitIfDone = () => stopping && sockets.size === 0 && process.exit(0);

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  let status = 200;
  let body;
  if (url.pathname === '/') {
    body = `${NAME} ${VERSION}\n`;
  } else if (url.pathname === '/health') {
    body = 'ok\n';
  } else if (url.pathname === '/headers') {
    // What the router told the app about the request (X-Forwarded-Proto and friends).
    body = JSON.stringify(req.headers) + '\n';
  } else {
    status = url.pathname === '/ws' ? 426 : 404;
    body = status === 426 ? 'websocket upgrade required\n' : 'not found\n';
  }
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
  console.log(`${req.method} ${req.url} ${status}`);
});

// One unmasked frame with FIN set (servers never mask; this one never fragments).
function frame(opcode, payload) {
  const len = payload.length;
  const head = Buffer.alloc(len < 126 ? 2 : len < 65536 ? 4 : 10);
  head[0] = 0x80 | opcode;
  if (len < 126) head[1] = len;
  else if (len < 65536) { head[1] = 126; head.writeUInt16BE(len, 2); }
  else { head[1] = 127; head.writeBigUInt64BE(BigInt(len), 2); }
  return Buffer.concat([head, payload]);
}

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  const key = req.headers['sec-websocket-key'];
  const reject = (status, text) =>
    socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  if (url.pathname !== '/ws') return reject(404, 'Not Found');
  if (req.method !== 'GET' || String(req.headers.upgrade).toLowerCase() !== 'websocket' ||
      !key || Buffer.from(key, 'base64').length !== 16) return reject(400, 'Bad Request');
  const accept = crypto.createHash('sha1').update(key + GUID).digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  socket.setNoDelay(true);

  const id = nextId++;
  const prefix = Buffer.from(url.searchParams.get('prefix') || '');
  const peer = req.headers['x-forwarded-for'] || socket.remoteAddress;
  console.log(`ws#${id} open from ${peer} (${NAME} ${VERSION}, prefix '${prefix}')`);
  let chunks = [], buffered = 0, need = 2; // unparsed input; parse once `need` bytes are there
  let fragments = null, fragOpcode = 0, fragLen = 0, messages = 0, closing = false;
  const close = (code, reason = '') => {
    if (closing) return;
    closing = true;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    socket.end(frame(8, payload));
  };
  socket.wsClose = close;
  sockets.add(socket);

  function parse() {
    let buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    while (!closing && buf.length >= 2) {
      const fin = (buf[0] & 0x80) !== 0, opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f, off = 2;
      if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if ((buf[0] & 0x70) || !(buf[1] & 0x80)) return close(1002, 'reserved bits set or frame not masked');
      if (len > MAX_MESSAGE) return close(1009, 'message too big');
      if (buf.length < off + 4 + len) { need = off + 4 + len; break; }
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
      buf = buf.subarray(off + 4 + len);
      need = 2;
      onFrame(fin, opcode, payload);
    }
    chunks = [buf];
    buffered = buf.length;
  }

  function onFrame(fin, opcode, payload) {
    if (opcode >= 8) { // control frames: never fragmented, at most 125 bytes, may come between fragments
      if (!fin || payload.length > 125) return close(1002, 'bad control frame');
      if (opcode === 8) return close(payload.length >= 2 ? payload.readUInt16BE(0) : 1000);
      if (opcode === 9) return socket.write(frame(10, payload));
      if (opcode === 10) return;
      return close(1002, `unknown opcode ${opcode}`);
    }
    if (opcode === 0 && !fragments) return close(1002, 'continuation without a message');
    if (opcode !== 0) {
      if (fragments) return close(1002, 'new message inside a fragmented one');
      if (opcode !== 1 && opcode !== 2) return close(1003, `unknown opcode ${opcode}`);
      fragments = [];
      fragOpcode = opcode;
      fragLen = 0;
    }
    fragments.push(payload);
    fragLen += payload.length;
    if (fragLen > MAX_MESSAGE) return close(1009, 'message too big');
    if (!fin) return;
    const message = Buffer.concat(fragOpcode === 1 ? [prefix, ...fragments] : fragments);
    fragments = null;
    messages++;
    socket.write(frame(fragOpcode, message));
  }

  socket.on('data', (chunk) => {
    chunks.push(chunk);
    buffered += chunk.length;
    if (buffered >= need) parse();
  });
  socket.on('error', (err) => console.log(`ws#${id} error: ${err.message}`));
  socket.on('close', () => {
    sockets.delete(socket);
    console.log(`ws#${id} closed after ${messages} messages`);
    exitIfDone();
  });
  if (head && head.length) socket.emit('data', head);
});

server.listen(port, '0.0.0.0', () => {
  console.log(`${NAME} ${VERSION} listening on 0.0.0.0:${port}`);
});

// Open WebSockets get a 1001 "going away" close; exit 0 once they are closed (2 s at most).
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.log(`${signal} received, exiting`);
    stopping = true;
    server.close();
    for (const socket of sockets) socket.wsClose(1001, 'server shutting down');
    exitIfDone();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
