/**
 * The changes of every open transaction, held per XID until its COMMIT or ROLLBACK. LogMiner returns a change
 * when it is made, long before anyone knows whether its transaction commits; capture may only hand on whole
 * committed transactions, so it keeps them (Debezium's "buffered" mode).
 *
 * Bounded memory: past `maxBufferBytes` (all open transactions together) the largest transaction in memory is
 * appended to a spill file of its own (JSON lines, under a directory per site) and its memory freed; at its
 * COMMIT the file is read back, in order, in chunks, followed by what came after in memory. A transaction is
 * NEVER abandoned, however long it stays open or however large it grows (Debezium drops transactions open longer
 * than a retention time, which loses committed data when they do commit): past `maxSpillBytes` on disk capture
 * stops with one line naming the XID, its start SCN, its size and the option to raise. Files are deleted at
 * COMMIT and ROLLBACK, and the directory emptied when capture starts (a crash leaves files behind; the
 * transactions are rebuilt from the redo anyway).
 *
 * ROLLBACK=1 rows: a ROLLBACK TO SAVEPOINT makes Oracle write, for every change since the savepoint, in reverse
 * order, a row that undoes it with the same ROWID. Each undoes the latest change of the transaction with that
 * ROWID still buffered, in memory or in its spill file (for which the ROWIDs of the spilled changes stay in
 * memory, a few dozen bytes each, and the undone ones are skipped when the file is read back).
 *
 * Synchronous file I/O: the files are local and small pieces are written and read at a time; it keeps the order
 * of appends and reads obvious, and capture reads one mining session at a time anyway.
 */
import fs from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { SitesyncError } from '../../src/errors.ts';
import type { Scn } from './logminer-reader.ts';

/** One change row of a transaction, CSF pieces joined. */
export interface BufferedRow {
  readonly scn: Scn;
  readonly operationCode: number;
  readonly owner: string;
  readonly table: string;
  readonly sqlRedo: string;
  readonly rowId: string | null;
}

export interface TransactionBufferOptions {
  readonly site: string;
  /** The directory for this site's spill files (created; emptied by start()). */
  readonly directory: string;
  /** Bytes of changes kept in memory over all open transactions. */
  readonly maxBufferBytes: number;
  /** Bytes of spill files on disk over all open transactions. */
  readonly maxSpillBytes: number;
}

interface Entry {
  readonly n: number;
  readonly row: BufferedRow;
  readonly bytes: number;
}

export interface OpenTransaction {
  readonly xid: string;
  readonly thread: number;
  /** The SCN of its START row, or of its first row seen when its START was before what was mined. */
  readonly startScn: Scn;
  /** Its START row was read (false: it began before capture's first window; its earlier changes were never seen). */
  readonly startSeen: boolean;
  /** Changes buffered and not undone. */
  changes: number;
}

interface Held extends OpenTransaction {
  next: number;
  memory: Entry[];
  memoryBytes: number;
  spill: { readonly file: string; bytes: number; count: number; readonly rowIds: Map<string, number[]>; readonly undone: Set<number> } | null;
}

const READ_CHUNK = 1 << 20;

function rowBytes(row: BufferedRow): number {
  return 64 + 2 * (row.sqlRedo.length + row.owner.length + row.table.length) + (row.rowId?.length ?? 0);
}

export class TransactionBuffer {
  private readonly open = new Map<string, Held>();
  private memoryBytes = 0;
  private spillBytes = 0;
  /** Transactions written to spill files, ever (tests and logs). */
  spills = 0;

  constructor(private readonly options: TransactionBufferOptions) {
    if (!(options.maxBufferBytes > 0)) throw new Error(`maxBufferBytes must be positive, not ${options.maxBufferBytes}`);
  }

  /** Empties the spill directory (files of a previous process) and forgets everything held. */
  start(): void {
    this.clear();
    fs.rmSync(this.options.directory, { recursive: true, force: true });
    fs.mkdirSync(this.options.directory, { recursive: true });
  }

  /** The stream ended: forgets everything held and removes the spill directory (its own, per site). */
  finish(): void {
    this.clear();
    fs.rmSync(this.options.directory, { recursive: true, force: true });
  }

  /** Forgets every open transaction and deletes their files. */
  clear(): void {
    for (const tx of this.open.values()) this.removeFile(tx);
    this.open.clear();
    this.memoryBytes = 0;
    this.spillBytes = 0;
  }

  get bytesInMemory(): number {
    return this.memoryBytes;
  }

  get bytesSpilled(): number {
    return this.spillBytes;
  }

  has(xid: string): boolean {
    return this.open.has(xid);
  }

  get(xid: string): OpenTransaction | undefined {
    return this.open.get(xid);
  }

  /** Open transactions, in no order. */
  transactions(): IterableIterator<OpenTransaction> {
    return this.open.values();
  }

  begin(xid: string, thread: number, startScn: Scn, startSeen: boolean): OpenTransaction {
    const known = this.open.get(xid);
    if (known) return known;
    const tx: Held = { xid, thread, startScn, startSeen, changes: 0, next: 0, memory: [], memoryBytes: 0, spill: null };
    this.open.set(xid, tx);
    return tx;
  }

  /** The lowest start SCN of the open transactions; null when none is open. */
  oldestStart(): Scn | null {
    let oldest: Scn | null = null;
    for (const tx of this.open.values()) if (oldest === null || tx.startScn < oldest) oldest = tx.startScn;
    return oldest;
  }

  add(xid: string, row: BufferedRow): void {
    const tx = this.open.get(xid);
    if (!tx) throw new Error(`transaction ${xid} is not open in the buffer`);
    const bytes = rowBytes(row);
    tx.memory.push({ n: tx.next++, row, bytes });
    tx.memoryBytes += bytes;
    tx.changes++;
    this.memoryBytes += bytes;
    while (this.memoryBytes > this.options.maxBufferBytes) {
      let largest: Held | null = null;
      for (const t of this.open.values()) if (t.memoryBytes > 0 && (largest === null || t.memoryBytes > largest.memoryBytes)) largest = t;
      if (!largest) break;
      this.spillOut(largest);
    }
  }

  /** A ROLLBACK=1 row: undoes the latest change of `xid` with this ROWID; false when there is none. */
  undo(xid: string, rowId: string): boolean {
    const tx = this.open.get(xid);
    if (!tx) return false;
    for (let i = tx.memory.length - 1; i >= 0; i--) {
      const e = tx.memory[i]!;
      if (e.row.rowId !== rowId) continue;
      tx.memory.splice(i, 1);
      tx.memoryBytes -= e.bytes;
      this.memoryBytes -= e.bytes;
      tx.changes--;
      return true;
    }
    const spilled = tx.spill?.rowIds.get(rowId);
    if (spilled && spilled.length > 0) {
      tx.spill!.undone.add(spilled.pop()!);
      tx.changes--;
      return true;
    }
    return false;
  }

  /** Removes a transaction and hands on its changes in order (spill file first, then memory); read lazily. */
  *take(xid: string): Generator<BufferedRow> {
    const tx = this.open.get(xid);
    if (!tx) return;
    this.open.delete(xid);
    this.memoryBytes -= tx.memoryBytes;
    const spill = tx.spill;
    try {
      if (spill) {
        const fd = fs.openSync(spill.file, 'r');
        try {
          const buffer = Buffer.alloc(READ_CHUNK);
          const decoder = new StringDecoder('utf8');
          let rest = '';
          for (;;) {
            const read = fs.readSync(fd, buffer, 0, READ_CHUNK, null);
            if (read === 0) break;
            // A chunk may end inside a multi-byte character: the decoder keeps its first bytes for the next.
            rest += decoder.write(buffer.subarray(0, read));
            let nl = rest.indexOf('\n');
            while (nl >= 0) {
              const line = rest.slice(0, nl);
              rest = rest.slice(nl + 1);
              const entry = parseLine(line);
              if (!spill.undone.has(entry.n)) yield entry.row;
              nl = rest.indexOf('\n');
            }
          }
          if (rest.length > 0) throw new Error(`spill file ${spill.file} ends inside a line`);
        } finally {
          fs.closeSync(fd);
        }
      }
      for (const e of tx.memory) yield e.row;
    } finally {
      this.removeFile(tx);
    }
  }

  /** A ROLLBACK, or a transaction at or below the checkpoint after a restart: forgotten. */
  discard(xid: string): void {
    const tx = this.open.get(xid);
    if (!tx) return;
    this.open.delete(xid);
    this.memoryBytes -= tx.memoryBytes;
    this.removeFile(tx);
  }

  private spillOut(tx: Held): void {
    const file = tx.spill?.file ?? path.join(this.options.directory, `${tx.xid}.jsonl`);
    const text = tx.memory.map((e) => JSON.stringify({ n: e.n, scn: e.row.scn.toString(), op: e.row.operationCode, owner: e.row.owner, table: e.row.table, sql: e.row.sqlRedo, rowId: e.row.rowId })).join('\n') + '\n';
    const bytes = Buffer.byteLength(text);
    if (this.spillBytes + bytes > this.options.maxSpillBytes) {
      const size = (tx.spill?.bytes ?? 0) + bytes;
      throw new SitesyncError(
        'SITESYNC_ERR_CONFIG',
        `transaction ${tx.xid} of site ${this.options.site} (started at SCN ${tx.startScn}) holds ${size} bytes of changes not yet committed, and spilling it would pass maxSpillBytes (${this.options.maxSpillBytes} bytes over all open transactions, in ${this.options.directory}); raise maxSpillBytes (and the disk there) and start capture again: it is never dropped`,
      );
    }
    if (!tx.spill) {
      tx.spill = { file, bytes: 0, count: 0, rowIds: new Map(), undone: new Set() };
      this.spills++;
    }
    fs.appendFileSync(file, text);
    for (const e of tx.memory) {
      if (e.row.rowId === null) continue;
      let list = tx.spill.rowIds.get(e.row.rowId);
      if (!list) tx.spill.rowIds.set(e.row.rowId, (list = []));
      list.push(e.n);
    }
    tx.spill.bytes += bytes;
    tx.spill.count += tx.memory.length;
    this.spillBytes += bytes;
    this.memoryBytes -= tx.memoryBytes;
    tx.memory = [];
    tx.memoryBytes = 0;
  }

  private removeFile(tx: Held): void {
    if (!tx.spill) return;
    this.spillBytes -= tx.spill.bytes;
    fs.rmSync(tx.spill.file, { force: true });
    tx.spill = null;
  }
}

function parseLine(line: string): { n: number; row: BufferedRow } {
  const o = JSON.parse(line) as { n: number; scn: string; op: number; owner: string; table: string; sql: string; rowId: string | null };
  return { n: o.n, row: { scn: BigInt(o.scn), operationCode: o.op, owner: o.owner, table: o.table, sqlRedo: o.sql, rowId: o.rowId } };
}
