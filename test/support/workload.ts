/** A deterministic scripted workload for the engine, and a snapshot of every answer it gives. */
import { Cmd } from '../../src/format/constants.js';
import { encodeImBody } from '../../src/format/bodies.js';
import type { MessageStore } from '../../src/storage/index.js';

/** Small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const APP = 7n;
export const USERS = Array.from({ length: 12 }, (_, i) => 1000n + BigInt(i));
export const GROUPS = [1n, 2n, 2n ** 40n + 3n];

export function imBody(sender: bigint, receiver: bigint, text: string, ts = 1_600_000_000): Buffer {
  return encodeImBody({
    sender,
    receiver,
    timestamp: ts,
    msgid: 0,
    content: Buffer.from(JSON.stringify({ text })),
  });
}

/** Runs `count` saves of every kind; returns the message ids in order. */
export function runWorkload(store: MessageStore, count: number, seed = 1, pad = 0): number[] {
  const r = rng(seed);
  const ids: number[] = [];
  for (let i = 0; i < count; i++) {
    const a = USERS[Math.floor(r() * USERS.length)];
    const b = USERS[Math.floor(r() * USERS.length)];
    const text = `m${i} ${'x'.repeat(pad + Math.floor(r() * 200))}`;
    const kind = r();
    if (kind < 0.6) {
      const body = imBody(a, b, text);
      ids.push(store.savePeerMessage(APP, b, 11n, Cmd.IM, body).msgId);
      store.savePeerMessage(APP, a, 12n, Cmd.IM, body);
    } else if (kind < 0.8) {
      const g = GROUPS[Math.floor(r() * GROUPS.length)];
      ids.push(
        store.saveGroupMessage(APP, g, 13n, Cmd.GROUP_IM, imBody(a, g, text, 1_600_000_000 + i)).msgId,
      );
    } else if (kind < 0.9) {
      const members = USERS.filter(() => r() < 0.4);
      if (members.length === 0) members.push(a);
      ids.push(
        store
          .savePeerGroupMessage(APP, members, 14n, Cmd.GROUP_IM, imBody(a, 99n, text))
          .map((x) => x.msgId)[0],
      );
    } else {
      ids.push(store.savePeerMessage(APP, a, 0n, Cmd.SYSTEM, Buffer.from(text)).msgId);
    }
  }
  return ids;
}

/** Every query's answer, in a comparable form. */
export function answers(store: MessageStore, since: number[] = [0]): string {
  const out: unknown[] = [];
  const show = (r: { messages: { msgId: number; deviceId: bigint; cmd: number; raw: Buffer }[] }) =>
    r.messages.map((m) => `${m.msgId}/${m.deviceId}/${m.cmd}/${m.raw.toString('base64')}`);
  for (const uid of USERS) {
    for (const s of since) {
      const r = store.syncMessage(APP, uid, s);
      out.push(['sync', uid, s, r.lastMsgId, r.hasMore, show(r)]);
      out.push(['new', uid, s, store.getNewCount(APP, uid, s)]);
    }
    out.push(['latest', uid, show({ messages: store.getLatestMessages(APP, uid, 20) })]);
  }
  for (const g of GROUPS) {
    for (const s of since) {
      const r = store.syncGroupMessage(APP, g, s, 0);
      out.push(['group', g, s, r.lastMsgId, r.hasMore, show(r)]);
    }
  }
  return JSON.stringify(out, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
}
