// The transport ceiling: a Nest TCP microservice with the same SavePeerMessage pattern that stores
// nothing and returns a counter. Plain JS, so the decorators are applied as functions.
// Usage: node bench/echo-server.mjs PORT
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload, Transport } from '@nestjs/microservices';

class EchoController {
  count = 0;

  save() {
    this.count++;
    return { msgId: this.count, prevMsgId: this.count - 1 };
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
decorateMethod(EchoController, 'ping', MessagePattern('Ping'));
Controller()(EchoController);

class EchoModule {}
Module({ controllers: [EchoController] })(EchoModule);

const port = Number(process.argv[2]);
const app = await NestFactory.createMicroservice(EchoModule, {
  transport: Transport.TCP,
  options: { host: '127.0.0.1', port },
  logger: false,
});
await app.listen();
console.log(`echo listening on ${port}`);
process.on('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
