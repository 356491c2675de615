/**
 * COPY … FROM STDIN sent in one write, without waiting for the server: the Query message, then for each
 * COPY statement in it, in order, its rows as one CopyData message and a CopyDone. One round trip where
 * each COPY usually takes two. The query may hold other statements (transactions' BEGIN, origin set-up
 * and COMMIT), whose results are ignored; the server reads each COPY's data when it reaches that COPY.
 *
 * Sending the rows ahead is safe: when a statement of the query fails, COPY included, the server discards
 * the rest of the query string, and it drops CopyData and CopyDone messages that arrive outside copy mode
 * (PostgreSQL protocol, "COPY Operations"). Nothing else can run on the connection meanwhile: node-postgres
 * sends the next query only after this one's ReadyForQuery.
 *
 * It plugs into node-postgres as a "submittable" (an object with submit(connection) passed to
 * client.query), the interface pg-copy-streams and pg-cursor use.
 */
import type pg from 'pg';

interface Connection {
  readonly stream: { write(data: Buffer): boolean };
}

export class PipelinedCopy {
  /** Settles with the query: after ReadyForQuery, or at the first error. */
  readonly done: Promise<void>;
  private settle!: (error: Error | null) => void;

  constructor(
    /** Statements, among them as many COPY … FROM STDIN as `data` has entries. */
    private readonly text: string,
    /** The rows of each COPY, in COPY's text format. */
    private readonly data: readonly Buffer[],
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = (error) => (error ? reject(error) : resolve());
    });
  }

  /** Sends the query on `client` and waits for it. */
  static run(client: pg.Client, text: string, data: readonly Buffer[]): Promise<void> {
    const copy = new PipelinedCopy(text, data);
    (client as unknown as { query(submittable: PipelinedCopy): void }).query(copy);
    return copy.done;
  }

  submit(connection: Connection): void {
    const text = Buffer.from(`${this.text}\0`, 'utf8');
    const message = Buffer.allocUnsafe(5 + text.length + this.data.reduce((n, r) => n + 10 + r.length, 0));
    let at = message.writeUInt8(0x51 /* Q */, 0);
    at = message.writeUInt32BE(4 + text.length, at);
    at += text.copy(message, at);
    for (const r of this.data) {
      at = message.writeUInt8(0x64 /* d: CopyData */, at);
      at = message.writeUInt32BE(4 + r.length, at);
      at += r.copy(message, at);
      at = message.writeUInt8(0x63 /* c: CopyDone */, at);
      at = message.writeUInt32BE(4, at);
    }
    connection.stream.write(message);
  }

  handleError(error: Error): void {
    this.settle(error);
  }

  handleReadyForQuery(): void {
    this.settle(null);
  }

  // Results of the statements before COPY, and the server's CopyInResponse: nothing to do.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handleCopyInResponse(): void {}

  /** node-postgres replaces this with its timeout handling when query_timeout is set. */
  callback(): void {}
}
