/**
 * LogMiner's SQL_REDO (one row change, as a statement that would redo it) read into column → value maps.
 *
 * Why a parser of SQL at all: V$LOGMNR_CONTENTS gives a row change only as text. The values in it are literals
 * that Oracle printed under the mining session's NLS settings, which sitesync pins (NLS_DATE_FORMAT
 * 'YYYY-MM-DD HH24:MI:SS', NLS_TIMESTAMP_FORMAT '… HH24:MI:SS.FF9', NLS_TIMESTAMP_TZ_FORMAT '….FF9 TZH:TZM',
 * NLS_NUMERIC_CHARACTERS '.,'), so the text inside each literal is the value's "Oracle text form" (the spec's
 * term) and oracle-kinds.ts turns it into canonical text by the column's type. This file only reads the
 * statement's shape; it never decides what a value means.
 *
 * Why hand-written and strict: a statement is read once, left to right, in linear time (no backtracking, no
 * regular expression over the whole statement: values may be megabytes of text with quotes and `||` in them).
 * Anything the grammar below does not allow is a DecodeError naming what was expected, the character offset
 * and a short preview, never the whole statement (it holds row data). A misread value would be silent
 * corruption at every other site; a refused one is a parked transaction someone can look at.
 *
 * Grammar read (whitespace between tokens: any run of space, tab, CR, LF; keywords in any letter case):
 *   insert into <table> [ ](<col>{,<col>}) values (<value>{,<value>})[;]
 *   update <table> [<alias>] set <col> = <value>{, <col> = <value>} [where <cond>{ and <cond>}][;]
 *   delete from <table> [<alias>] [where <cond>{ and <cond>}][;]
 *   <table>  = "OWNER"."TABLE"              <col> = [<alias>.]"NAME"
 *   <cond>   = <col> = <value> | <col> IS NULL | ROWID = '<rowid>'   (the ROWID condition is dropped)
 *   <value>  = [/* hint *\/] <term>{ || <term>} | NULL | Unsupported Type | <unquoted number>
 *   <term>   = '<text with '' for '>' | UNISTR('<text with \XXXX and \\>') | TO_DATE('<text>'[, '<fmt>'])
 *            | TO_TIMESTAMP(…) | TO_TIMESTAMP_TZ(…) | TO_YMINTERVAL('<text>') | TO_DSINTERVAL('<text>')
 *            | HEXTORAW('<hex>') | TO_BINARY_FLOAT('<text>') | TO_BINARY_DOUBLE('<text>') | EMPTY_CLOB() | EMPTY_BLOB()
 *   (`||` only joins string literals and UNISTR calls; a function's format argument is read and not kept.)
 *
 * Verified (read only, nothing copied), from:
 * - Debezium's LogMinerDmlParser and LogMinerDmlParserTest (debezium/debezium, debezium-connector-oracle):
 *   lower-case `insert into`/`update`/`set`/`where`/`and`/`delete from`, quoted `"OWNER"."TABLE"`, the insert
 *   column list with or without a space before `(`, `values (` with values separated by `,` and no space,
 *   SET and WHERE items separated by `, ` and ` and `, `"C" = 'v'`, `"C" IS NULL`, also `"C" = NULL` in a WHERE,
 *   numbers as quoted strings (`'540'`), `''` inside strings, `TO_DATE('2021-03-17 10:18:55', 'YYYY-MM-DD
 *   HH24:MI:SS')`, `TO_TIMESTAMP('2020-02-01 00:00:00.')` (one argument, and an empty fraction after `.`),
 *   `UNISTR('\0412\044B') || UNISTR('\043F\043E')` (concatenations, with or without spaces around `||`),
 *   `UNISTR('…')` holding plain characters between escapes, `HEXTORAW('…')`, `EMPTY_BLOB()` after a
 *   `/* JSON *\/` hint, `Unsupported Type` for columns LogMiner cannot show, an UPDATE without WHERE and a
 *   DELETE without WHERE (DBZ-3235), a table alias (`update "S"."T" a set a."C" = …`, DBZ-4194), names with
 *   spaces (`"COL 1"`, `"OBJ# 74858"` when LogMiner's dictionary misses a table), the trailing `;` optional
 *   (DBMS_LOGMNR.NO_SQL_DELIMITER drops it). UnistrHelper: `\XXXX` is four hex digits.
 * - Debezium's OracleValueConverters: `TO_YMINTERVAL('-03-06')`, `TO_DSINTERVAL('-001 02:03:04.56')`,
 *   `TO_TIMESTAMP_TZ('…')`; HEXTORAW may carry a NUMBER / BINARY_FLOAT / interval in Oracle's internal bytes
 *   (then oracle-kinds refuses the hex as a number: never misread).
 * - A LogMiner listing (dbaglobe.com, "OPERATION SQL_REDO SQL_UNDO INFO"): `insert into "ADMIN"."T"("ID","C")
 *   values ('1',EMPTY_CLOB());` then `update … set "C" = 'a' where "ID" = '1';` (a short LOB written inline).
 * - Oracle's LogMiner documentation: SQL_REDO "equivalent (but not necessarily identical)" statements; the
 *   `ROWID = '…'` condition (left out by DBMS_LOGMNR.NO_ROWID_IN_STMT).
 * Assumed, not found stated: TO_BINARY_FLOAT / TO_BINARY_DOUBLE wrappers (accepted if they appear; Debezium
 * reads BINARY_FLOAT/DOUBLE as plain quoted text); `\\` inside UNISTR for a backslash (Oracle's UNISTR rule);
 * unquoted numbers (Debezium's test DBZ-3258 has one; accepted as `-?digits[.digits][E±digits]`).
 * Refused on purpose: an `or` in a WHERE (not a row's identity); a quote LogMiner failed to double (Debezium's
 * "relaxed quote detection" guesses there; a guess could misplace a value, so it is a DecodeError here).
 */
import { DecodeError } from '../../src/errors.ts';

/** The text inside an SQL_REDO literal under sitesync's pinned NLS settings (the spec's "Oracle text form"). */
export type OracleText = string;

/** The function that wrapped a literal, when one did. */
export type RedoFunction =
  | 'UNISTR'
  | 'TO_DATE'
  | 'TO_TIMESTAMP'
  | 'TO_TIMESTAMP_TZ'
  | 'TO_YMINTERVAL'
  | 'TO_DSINTERVAL'
  | 'HEXTORAW'
  | 'TO_BINARY_FLOAT'
  | 'TO_BINARY_DOUBLE'
  | 'EMPTY_CLOB'
  | 'EMPTY_BLOB';

export interface ParsedRedo {
  readonly op: 'insert' | 'update' | 'delete';
  readonly owner: string;
  readonly table: string;
  /** insert: every column of the statement; update: the SET columns; delete: empty. LOB markers and unsupported left out. */
  readonly newValues: Map<string, OracleText | null>;
  /** update/delete: the WHERE columns (`ROWID = '…'` left out); insert: empty. */
  readonly oldValues: Map<string, OracleText | null>;
  /** Columns whose value was EMPTY_CLOB() / EMPTY_BLOB(): the LOB comes in separate LOB rows; not in the maps. */
  readonly emptyLobs: ReadonlySet<string>;
  /** Columns whose value LogMiner wrote as `Unsupported Type` (it cannot show that type); not in the maps. */
  readonly unsupported: ReadonlySet<string>;
  /** Columns (of either map) whose literal a function wrapped: `TO_DATE`, `HEXTORAW`, `UNISTR`… (a plain literal: absent). */
  readonly functions: ReadonlyMap<string, RedoFunction>;
}

/** Functions that take one string literal (and, for the date-time ones, an optional format literal). */
const ONE_STRING = new Set<string>(['UNISTR', 'TO_YMINTERVAL', 'TO_DSINTERVAL', 'HEXTORAW', 'TO_BINARY_FLOAT', 'TO_BINARY_DOUBLE']);
const WITH_FORMAT = new Set<string>(['TO_DATE', 'TO_TIMESTAMP', 'TO_TIMESTAMP_TZ']);
const NO_ARGUMENT = new Set<string>(['EMPTY_CLOB', 'EMPTY_BLOB']);

type Value =
  | { readonly kind: 'text'; readonly text: string; readonly fn: RedoFunction | null }
  | { readonly kind: 'null' }
  | { readonly kind: 'lob'; readonly fn: 'EMPTY_CLOB' | 'EMPTY_BLOB' }
  | { readonly kind: 'unsupported' };

const PREVIEW = 32;

/** Reads one SQL_REDO statement of an insert, update or delete. Throws DecodeError for anything else. */
export function parseRedo(sql: string): ParsedRedo {
  return new RedoReader(sql).statement();
}

class RedoReader {
  private pos = 0;
  private owner: string | null = null;
  private table: string | null = null;
  private readonly newValues = new Map<string, OracleText | null>();
  private readonly oldValues = new Map<string, OracleText | null>();
  private readonly emptyLobs = new Set<string>();
  private readonly unsupported = new Set<string>();
  private readonly functions = new Map<string, RedoFunction>();

  constructor(private readonly sql: string) {}

  statement(): ParsedRedo {
    this.space();
    let op: ParsedRedo['op'];
    if (this.word('insert')) {
      op = 'insert';
      this.keyword('into');
      this.tableName();
      this.insertBody();
    } else if (this.word('update')) {
      op = 'update';
      this.tableName();
      const alias = this.alias('set');
      this.keyword('set');
      this.setList(alias);
      if (this.word('where')) this.whereList(alias);
    } else if (this.word('delete')) {
      op = 'delete';
      this.keyword('from');
      this.tableName();
      const alias = this.alias('where');
      if (this.word('where')) this.whereList(alias);
    } else {
      return this.fail('expected insert, update or delete');
    }
    this.space();
    if (this.sql.charCodeAt(this.pos) === 59 /* ; */) {
      this.pos++;
      this.space();
    }
    if (this.pos !== this.sql.length) this.fail('expected the end of the statement');
    return {
      op,
      owner: this.owner!,
      table: this.table!,
      newValues: this.newValues,
      oldValues: this.oldValues,
      emptyLobs: this.emptyLobs,
      unsupported: this.unsupported,
      functions: this.functions,
    };
  }

  // ─── statement parts ─────────────────────────────────────────────────────────────────────────────────

  private tableName(): void {
    this.space();
    this.owner = this.quotedName('the owner as "OWNER"');
    if (this.sql.charCodeAt(this.pos) !== 46 /* . */) this.fail('expected . between owner and table');
    this.pos++;
    this.table = this.quotedName('the table as "TABLE"');
  }

  /** An optional table alias (a plain word that is not the next keyword). */
  private alias(next: string): string | null {
    const save = this.pos;
    this.space();
    if (this.peekWord(next)) {
      this.pos = save;
      return null;
    }
    const start = this.pos;
    while (this.pos < this.sql.length && isWordChar(this.sql.charCodeAt(this.pos))) this.pos++;
    if (this.pos === start) {
      this.pos = save;
      return null;
    }
    return this.sql.slice(start, this.pos);
  }

  private insertBody(): void {
    this.space();
    this.expectChar(40 /* ( */, 'expected ( before the column list');
    const columns: string[] = [];
    const seen = new Set<string>();
    for (;;) {
      this.space();
      columns.push(this.quotedName('a column as "NAME"'));
      this.space();
      if (this.takeChar(41 /* ) */)) break;
      this.expectChar(44 /* , */, 'expected , or ) in the column list');
    }
    this.keyword('values');
    this.space();
    this.expectChar(40, 'expected ( after values');
    for (let i = 0; ; i++) {
      if (i >= columns.length) this.fail(`more values than the ${columns.length} columns`);
      this.space();
      this.put(this.newValues, columns[i]!, this.value(), seen);
      this.space();
      if (this.takeChar(41)) {
        if (i + 1 !== columns.length) this.fail(`${i + 1} values for ${columns.length} columns`);
        return;
      }
      this.expectChar(44, 'expected , or ) after a value');
    }
  }

  private setList(alias: string | null): void {
    const seen = new Set<string>();
    for (;;) {
      this.space();
      const column = this.columnRef(alias);
      this.space();
      this.expectChar(61 /* = */, 'expected = after a SET column');
      this.space();
      this.put(this.newValues, column, this.value(), seen);
      const save = this.pos;
      this.space();
      if (!this.takeChar(44)) {
        this.pos = save;
        return;
      }
    }
  }

  private whereList(alias: string | null): void {
    const seen = new Set<string>();
    for (;;) {
      this.space();
      if (this.word('ROWID')) {
        this.space();
        this.expectChar(61, 'expected = after ROWID');
        this.space();
        if (this.sql.charCodeAt(this.pos) !== 39) this.fail("expected ROWID = '…'");
        this.quotedString();
      } else {
        const column = this.columnRef(alias);
        this.space();
        if (this.word('IS')) {
          this.keyword('NULL');
          this.put(this.oldValues, column, { kind: 'null' }, seen);
        } else {
          this.expectChar(61, 'expected = or IS NULL after a WHERE column');
          this.space();
          this.put(this.oldValues, column, this.value(), seen);
        }
      }
      const save = this.pos;
      this.space();
      if (this.peekWord('or')) this.fail('an or in the WHERE (a row change is identified by and only)');
      if (!this.word('and')) {
        this.pos = save;
        return;
      }
    }
  }

  private columnRef(alias: string | null): string {
    if (alias !== null && this.sql.startsWith(alias, this.pos) && this.sql.charCodeAt(this.pos + alias.length) === 46) {
      this.pos += alias.length + 1;
    }
    return this.quotedName('a column as "NAME"');
  }

  private put(into: Map<string, OracleText | null>, column: string, value: Value, seen: Set<string>): void {
    if (seen.has(column)) this.fail(`column "${column}" appears twice`);
    seen.add(column);
    switch (value.kind) {
      case 'null':
        into.set(column, null);
        return;
      case 'text':
        into.set(column, value.text);
        if (value.fn !== null) this.functions.set(column, value.fn);
        return;
      case 'lob':
        this.emptyLobs.add(column);
        this.functions.set(column, value.fn);
        return;
      case 'unsupported':
        this.unsupported.add(column);
        return;
    }
  }

  // ─── values ──────────────────────────────────────────────────────────────────────────────────────────

  private value(): Value {
    this.hints();
    const c = this.sql.charCodeAt(this.pos);
    if (c === 39 /* ' */ || this.peekFunction('UNISTR')) return this.concatenation();
    if (c === 45 /* - */ || c === 46 /* . */ || isDigit(c)) return { kind: 'text', text: this.unquotedNumber(), fn: null };
    if (this.word('NULL')) return { kind: 'null' };
    if (this.word('Unsupported')) {
      this.keyword('Type');
      return { kind: 'unsupported' };
    }
    const start = this.pos;
    while (this.pos < this.sql.length && isWordChar(this.sql.charCodeAt(this.pos))) this.pos++;
    const name = this.sql.slice(start, this.pos).toUpperCase();
    if (name === '') this.fail('expected a value');
    this.space();
    if (!this.takeChar(40)) {
      this.pos = start;
      this.fail('expected a value (a literal, NULL or a known function)');
    }
    this.space();
    if (NO_ARGUMENT.has(name)) {
      this.expectChar(41, `expected ) after ${name}(`);
      return { kind: 'lob', fn: name as 'EMPTY_CLOB' | 'EMPTY_BLOB' };
    }
    if (!ONE_STRING.has(name) && !WITH_FORMAT.has(name)) {
      this.pos = start;
      this.fail(`unknown function ${name.slice(0, PREVIEW)}`);
    }
    const text = this.quotedString();
    this.space();
    if (WITH_FORMAT.has(name) && this.takeChar(44)) {
      this.space();
      if (this.sql.charCodeAt(this.pos) !== 39) this.fail(`expected a format literal in ${name}`);
      this.quotedString();
      this.space();
    }
    this.expectChar(41, `expected ) to close ${name}(`);
    return { kind: 'text', text, fn: name as RedoFunction };
  }

  /** `/* … *\/` hints LogMiner puts before some values (`/* JSON *\/`): skipped. */
  private hints(): void {
    while (this.sql.startsWith('/*', this.pos)) {
      const end = this.sql.indexOf('*/', this.pos + 2);
      if (end === -1) this.fail('unterminated /* comment');
      this.pos = end + 2;
      this.space();
    }
  }

  /** One or more string literals and UNISTR calls joined by `||`. */
  private concatenation(): Value {
    let text = '';
    let unistr = false;
    for (;;) {
      if (this.peekFunction('UNISTR')) {
        this.word('UNISTR');
        this.space();
        this.expectChar(40, 'expected ( after UNISTR');
        this.space();
        if (this.sql.charCodeAt(this.pos) !== 39) this.fail("expected UNISTR('…')");
        const at = this.pos;
        text += this.unistr(this.quotedString(), at);
        this.space();
        this.expectChar(41, 'expected ) to close UNISTR(');
        unistr = true;
      } else if (this.sql.charCodeAt(this.pos) === 39) {
        text += this.quotedString();
      } else {
        this.fail("expected a string literal or UNISTR('…') after ||");
      }
      const save = this.pos;
      this.space();
      if (!this.sql.startsWith('||', this.pos)) {
        this.pos = save;
        return { kind: 'text', text, fn: unistr ? 'UNISTR' : null };
      }
      this.pos += 2;
      this.space();
    }
  }

  /** `'…'` with `''` for a quote; the position is at the opening quote. Linear: slices between quotes. */
  private quotedString(): string {
    const open = this.pos;
    let out = '';
    let from = open + 1;
    for (;;) {
      const q = this.sql.indexOf("'", from);
      if (q === -1) {
        this.pos = open;
        return this.fail('unterminated string literal');
      }
      out += this.sql.slice(from, q);
      if (this.sql.charCodeAt(q + 1) === 39) {
        out += "'";
        from = q + 2;
        continue;
      }
      this.pos = q + 1;
      return out;
    }
  }

  /** UNISTR's escapes: `\XXXX` (four hex digits, one UTF-16 unit) and `\\`; other characters as they are. */
  private unistr(body: string, at: number): string {
    let out = '';
    let from = 0;
    for (;;) {
      const b = body.indexOf('\\', from);
      if (b === -1) break;
      out += body.slice(from, b);
      if (body.charCodeAt(b + 1) === 92) {
        out += '\\';
        from = b + 2;
        continue;
      }
      const hex = body.slice(b + 1, b + 5);
      if (!/^[0-9A-Fa-f]{4}$/.test(hex)) {
        this.pos = at;
        this.fail(`a backslash in UNISTR not followed by four hex digits or a backslash (${JSON.stringify(body.slice(b, b + 6))})`);
      }
      out += String.fromCharCode(parseInt(hex, 16));
      from = b + 5;
    }
    out += body.slice(from);
    return out;
  }

  private unquotedNumber(): string {
    const start = this.pos;
    const s = this.sql;
    if (s.charCodeAt(this.pos) === 45) this.pos++;
    const digitsFrom = this.pos;
    while (isDigit(s.charCodeAt(this.pos))) this.pos++;
    let digits = this.pos - digitsFrom;
    if (s.charCodeAt(this.pos) === 46) {
      this.pos++;
      const f = this.pos;
      while (isDigit(s.charCodeAt(this.pos))) this.pos++;
      digits += this.pos - f;
    }
    if (digits === 0) {
      this.pos = start;
      this.fail('expected a value');
    }
    const e = s.charCodeAt(this.pos);
    if (e === 69 || e === 101) {
      this.pos++;
      const sign = s.charCodeAt(this.pos);
      if (sign === 43 || sign === 45) this.pos++;
      const f = this.pos;
      while (isDigit(s.charCodeAt(this.pos))) this.pos++;
      if (this.pos === f) this.fail('expected exponent digits in a number');
    }
    if (this.pos < s.length && isWordChar(s.charCodeAt(this.pos))) this.fail('expected , ) or a keyword after a number');
    return s.slice(start, this.pos);
  }

  // ─── tokens ──────────────────────────────────────────────────────────────────────────────────────────

  /** `"…"`: Oracle identifiers cannot hold a double quote, so the next `"` ends it. */
  private quotedName(what: string): string {
    if (this.sql.charCodeAt(this.pos) !== 34) this.fail(`expected ${what}`);
    const end = this.sql.indexOf('"', this.pos + 1);
    if (end === -1) this.fail('unterminated quoted name');
    const name = this.sql.slice(this.pos + 1, end);
    if (name === '') this.fail('empty quoted name');
    this.pos = end + 1;
    return name;
  }

  private space(): void {
    const s = this.sql;
    for (;;) {
      const c = s.charCodeAt(this.pos);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.pos++;
      else return;
    }
  }

  private peekWord(word: string): boolean {
    const s = this.sql;
    if (s.length - this.pos < word.length) return false;
    for (let i = 0; i < word.length; i++) {
      if ((s.charCodeAt(this.pos + i) | 0x20) !== (word.charCodeAt(i) | 0x20)) return false;
    }
    return !isWordChar(s.charCodeAt(this.pos + word.length));
  }

  /** A keyword (any letter case) as a whole word at the position, after optional whitespace: consumed. */
  private word(word: string): boolean {
    const save = this.pos;
    this.space();
    if (this.peekWord(word)) {
      this.pos += word.length;
      return true;
    }
    this.pos = save;
    return false;
  }

  private keyword(word: string): void {
    if (!this.word(word)) {
      this.space();
      this.fail(`expected ${word}`);
    }
  }

  /** `NAME(` or `NAME (` at the position (without consuming). */
  private peekFunction(name: string): boolean {
    if (!this.peekWord(name)) return false;
    let p = this.pos + name.length;
    while (this.sql.charCodeAt(p) === 32) p++;
    return this.sql.charCodeAt(p) === 40;
  }

  private takeChar(code: number): boolean {
    if (this.sql.charCodeAt(this.pos) !== code) return false;
    this.pos++;
    return true;
  }

  private expectChar(code: number, message: string): void {
    if (!this.takeChar(code)) this.fail(message);
  }

  private fail(message: string): never {
    const where = this.table !== null ? ` of "${this.owner}"."${this.table}"` : '';
    const rest = this.sql.slice(this.pos, this.pos + PREVIEW);
    const found = this.pos >= this.sql.length ? 'the end' : JSON.stringify(rest + (this.sql.length - this.pos > PREVIEW ? '…' : ''));
    throw new DecodeError(`cannot read LogMiner SQL_REDO${where} at character ${this.pos}: ${message}, found ${found}`);
  }
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Letters, digits, `_`, `$`, `#` (what an unquoted Oracle word holds). NaN (past the end) is not. */
function isWordChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c === 35;
}
