/**
 * A COPY … FROM STDIN sent in one write, without waiting for the server: the Query message, then the rows
 * as one CopyData message, then CopyDone. One round trip where COPY usually takes two; and the query may
 * start with other statements (the transaction's BEGIN and origin set-up), whose results are ignored.
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
    /** Statements, the last of which is COPY … FROM STDIN. */
    private readonly text: string,
    /** The rows in COPY's text format. */
    private readonly data: string,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = (error) => (error ? reject(error) : resolve());
    });
  }

  /** Sends the query on `client` and waits for it. */
  static run(client: pg.Client, text: string, data: string): Promise<void> {
    const copy = new PipelinedCopy(text, data);
    (client as unknown as { query(submittable: PipelinedCopy): void }).query(copy);
    return copy.done;
  }

  submit(connection: Connection): void {
    const text = Buffer.from(`${this.text}\0`, 'utf8');
    const data = Buffer.from(this.data, 'utf8');
    const message = Buffer.allocUnsafe(5 + text.length + 5 + data.length + 5);
    let at = 0;
    at = message.writeUInt8(0x51 /* Q */, at);
    at = message.writeUInt32BE(4 + text.length, at);
    at += text.copy(message, at);
    at = message.writeUInt8(0x64 /* d: CopyData */, at);
    at = message.writeUInt32BE(4 + data.length, at);
    at += data.copy(message, at);
    at = message.writeUInt8(0x63 /* c: CopyDone */, at);
    message.writeUInt32BE(4, at);
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
