#!/usr/bin/env node

/**
 * Local TCP server for the tcp bench scenarios (its own process). The first byte of a
 * connection picks the mode:
 *   'U'          upload sink: reads until EOF, then answers the byte count (u64) and ends
 *   'D' + u64 n  download source: sends n bytes (one reused 64 KiB block), then ends
 *   'E'          echo: every byte after 'E' comes back, until EOF
 * Prints "listening <port>" on stdout once ready.
 */
const net = require('node:net');

const BLOCK = Buffer.alloc(64 * 1024, 0x61);

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  socket.on('error', () => {});
  let mode;
  let head = Buffer.alloc(0);
  let count = 0;
  const onData = (chunk) => {
    if (mode === undefined) {
      head = Buffer.concat([head, chunk]);
      if (head[0] === 0x55) {
        mode = 'U';
        count = head.length - 1;
      } else if (head[0] === 0x45) {
        mode = 'E';
        if (head.length > 1) socket.write(head.subarray(1));
      } else if (head[0] === 0x44 && head.length >= 9) {
        mode = 'D';
        let left = Number(head.readBigUInt64BE(1));
        const send = () => {
          while (left > 0) {
            const n = Math.min(left, BLOCK.length);
            left -= n;
            if (!socket.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) return socket.once('drain', send);
          }
          socket.end();
        };
        send();
      }
      return;
    }
    if (mode === 'U') count += chunk.length;
    else if (mode === 'E') socket.write(chunk);
  };
  socket.on('data', onData);
  socket.on('end', () => {
    if (mode === 'U') {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(BigInt(count));
      socket.end(b);
    } else if (mode === 'E') socket.end();
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
