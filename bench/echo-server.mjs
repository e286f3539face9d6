// The transport ceiling: a Nest TCP microservice with the same SavePeerMessage and SavePeerMessages
// patterns that stores nothing and returns counters, on the same transport strategy as ims
// (ImsTcpServer) when it is built. Plain JS, so the decorators are applied as functions.
// Usage: node bench/echo-server.mjs PORT
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import * as fs from 'node:fs';
import { MessagePattern, Payload, Transport } from '@nestjs/microservices';

const strategyJs = new URL('../dist/src/rpc/ims-tcp.server.js', import.meta.url);
const ImsTcpServer = fs.existsSync(strategyJs) ? (await import(strategyJs.href)).ImsTcpServer : null;

class EchoController {
  count = 0;

  save() {
    this.count++;
    return { msgId: this.count, prevMsgId: this.count - 1 };
  }

  saveMany(r) {
    return {
      results: r.messages.map(() => {
        this.count++;
        return { msgId: this.count, prevMsgId: this.count - 1 };
      }),
    };
  }

  ping() {
    return { pong: true };
  }
}

function decorateMethod(cls, name, ...decorators) {
  const descriptor = Object.getOwnPropertyDescriptor(cls.prototype, name);
  for (const d of decorators) d(cls.prototype, name, descriptor);
}

decorateMethod(EchoController, 'save', MessagePattern('SavePeerMessage'));
Payload()(EchoController.prototype, 'save', 0);
decorateMethod(EchoController, 'saveMany', MessagePattern('SavePeerMessages'));
Payload()(EchoController.prototype, 'saveMany', 0);
decorateMethod(EchoController, 'ping', MessagePattern('Ping'));
Controller()(EchoController);

class EchoModule {}
Module({ controllers: [EchoController] })(EchoModule);

const port = Number(process.argv[2]);
const app = await NestFactory.createMicroservice(
  EchoModule,
  ImsTcpServer
    ? { strategy: new ImsTcpServer({ host: '127.0.0.1', port }), logger: false }
    : { transport: Transport.TCP, options: { host: '127.0.0.1', port }, logger: false },
);
await app.listen();
console.log(`echo listening on ${port}`);
process.on('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
