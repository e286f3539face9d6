import { ClientTCP, type TcpSocket } from '@nestjs/microservices';

/** What one connection went through, for saying why it failed. */
interface LinkState {
  /** The TLS handshake completed (the client's side of it). */
  secured: boolean;
  /** Any byte arrived from the server. */
  received: boolean;
  /** The first error the socket reported. */
  error: NodeJS.ErrnoException | null;
}

/** The server's certificate failed the client's checks (node:tls's verification codes). */
const UNTRUSTED_SERVER =
  /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CERT_REVOKED|CERT_UNTRUSTED|CERT_REJECTED|ERR_TLS_CERT_ALTNAME_INVALID)$/;

/** Phrase of every failure that provably happened before the server read a request (not written). */
export const TLS_HANDSHAKE_FAILED = 'TLS handshake failed';

/**
 * Nest's ClientTCP, saying why a connection failed. Stock, every request waiting on a connection that
 * closed fails with a bare `Connection closed`, and a TLS failure's cause (no client certificate, a
 * server certificate the client does not trust, TLS to a plain port) only reaches a log line of
 * Nest's. Here the cause is the requests' error:
 * - `TLS handshake failed: …` when the handshake provably failed (an alert, a certificate the client
 *   refused, a close before the handshake ended): the server never read a request;
 * - `Connection closed …` with a likely cause when the server closed a fresh connection before
 *   answering anything (Node's TLS server drops a client certificate it refuses without an alert, and a
 *   TLS port drops a plain client the same way); a request may have been read, as for any close.
 */
export class TcpLink extends ClientTCP {
  private readonly links = new WeakMap<TcpSocket, LinkState>();
  private closingByUser = false;

  constructor(
    private readonly target: {
      host: string;
      port: number;
      tlsOptions?: import('node:tls').ConnectionOptions;
    },
  ) {
    super(target);
  }

  override createSocket(): TcpSocket {
    const socket = super.createSocket();
    const state: LinkState = { secured: false, received: false, error: null };
    this.links.set(socket, state);
    const raw = socket.netSocket;
    raw.once('secureConnect', () => (state.secured = true));
    raw.once('data', () => (state.received = true));
    raw.on('error', (err: NodeJS.ErrnoException) => (state.error ??= err));
    return socket;
  }

  override close(): void {
    this.closingByUser = true;
    try {
      super.close();
    } finally {
      this.closingByUser = false;
    }
  }

  /** A TLS failure the requests' error will name is not also logged with a stack trace. */
  override handleError(err: unknown): void {
    const state = this.socket ? this.links.get(this.socket) : undefined;
    if (state && this.describe(state)?.startsWith(TLS_HANDSHAKE_FAILED)) return;
    super.handleError(err);
  }

  override handleClose(): void {
    const state = this.socket ? this.links.get(this.socket) : undefined;
    const cause = state && !this.closingByUser ? this.describe(state) : null;
    if (cause && this.routingMap.size > 0) {
      // What Nest's handleClose does with `Connection closed`, with the cause instead.
      const callbacks = [...this.routingMap.values()];
      this.routingMap.clear();
      for (const callback of callbacks) {
        try {
          (callback as (packet: { err: Error }) => void)({ err: new Error(cause) });
        } catch (err) {
          super.handleError(err);
        }
      }
    }
    super.handleClose();
  }

  private describe(state: LinkState): string | null {
    const tls = this.target.tlsOptions;
    const err = state.error;
    const where = `${this.target.host}:${this.target.port}`;
    if (tls && err) {
      const code = err.code ?? '';
      if (/CERTIFICATE_REQUIRED/.test(code))
        return (
          `${TLS_HANDSHAKE_FAILED}: ${where} requires a client certificate (TLS alert "certificate required"): ` +
          `pass tls: { cert, key } with one signed by the CA in the server's tls_ca`
        );
      if (/^ERR_SSL_(SSLV3|TLSV1|TLSV13)_ALERT_/.test(code))
        return (
          `${TLS_HANDSHAKE_FAILED}: ${where} refused the connection (TLS alert ` +
          `"${(err as { reason?: string }).reason ?? code}"): is the client certificate signed by the CA in its tls_ca?`
        );
      if (UNTRUSTED_SERVER.test(code))
        return (
          `${TLS_HANDSHAKE_FAILED}: the certificate of ${where} is not trusted: ${err.message} (${code}); ` +
          `pass tls: { ca } with the CA that signed it, and connect with a host name it names`
        );
      if (!state.secured)
        return (
          `${TLS_HANDSHAKE_FAILED}: ${err.message}${code ? ` (${code})` : ''}; ` +
          `if ${where} serves plain TCP (no tls_cert), leave out the tls option`
        );
    }
    if (state.received || err) return null;
    if (tls && state.secured)
      return (
        `Connection closed by ${where} right after the TLS handshake, before any answer: it may have refused ` +
        (tls.cert
          ? `the client certificate (is it signed by the CA in the server's tls_ca?)`
          : `a client without a certificate (with tls_ca it requires one)`) +
        `; the server's log says why`
      );
    if (!tls)
      return (
        `Connection closed by ${where} before any answer on a new connection; if the server serves TLS ` +
        `(tls_cert is set), pass the tls option`
      );
    return null;
  }
}
