// loopback.cjs is preloaded (node --require) into every Node server the conformance and interop
// scripts start, so servers that call app.listen(PORT) (all interfaces) bind 127.0.0.1 only.
'use strict';
const net = require('node:net');

const HOST = process.env.TOOLGATE_BIND_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    // listen({port, host, ...}[, cb]); a path (unix socket) is left alone.
    if (first.path === undefined) args[0] = { ...first, host: HOST };
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, cb])
    if (typeof args[1] === 'string' || args[1] === undefined || args[1] === null) {
      args[1] = HOST;
    } else {
      args.splice(1, 0, HOST);
    }
  } else if (first === undefined || typeof first === 'function') {
    // listen([cb]): random port on all interfaces.
    args.unshift(0, HOST);
  }
  return listen.apply(this, args);
};
