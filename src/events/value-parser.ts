/**
 * Reads and writes the canonical text of each value kind (docs/value-kinds.md is the statement of each form).
 *
 * `parseValue(text, kind)` turns the text a change event carries into a typed value; `formatValue(value, kind)`
 * is its inverse, and what a capture of another kind (MariaDB, SQL Server…) uses to write its values in the
 * forms PostgreSQL 15 prints under connectors/postgres/session-settings.ts. Both are strict: text that is not
 * exactly the canonical form, or a value the kind cannot hold, is refused with a `ValueFormatError`, never
 * adjusted. For every canonical `t`, `formatValue(parseValue(t, k), k) === t`; for every value `v` that
 * formats, `parseValue(formatValue(v, k), k)` is `v` again (deep equality, `-0` and `NaN` included).
 *
 * Most parsers read the text leniently and then require that formatting the value gives the text back: one
 * formatter decides what canonical means, so the parser cannot drift from it.
 *
 * Typed values:
 * - boolean: boolean; int16, int32: number; int64: bigint
 * - float32, float64: number (NaN, ±Infinity, -0 kept); float32 values are exactly representable in 32 bits
 * - decimal: string, the canonical text (formatValue also normalizes any plain decimal notation or a bigint)
 * - string, enum, json, uuid, other: string
 * - bytes: Buffer
 * - date: days since 1970-01-01 (integer number), ±Infinity for ±infinity
 * - time: bigint microseconds since midnight, 0 to 86 400 000 000 (24:00:00) inclusive
 * - timestamp, timestamptz: bigint microseconds since 1970-01-01 00:00:00 (UTC), ±Infinity (number) for ±infinity
 * - interval: { months, days, micros } (PostgreSQL's own three fields)
 * - array: nested JS arrays, `null` for NULL elements, with an optional `lowerBounds` property
 * - struct: (string | null)[], the text of each field
 */
import { formatKind, type ValueKind } from './value-kind.ts';

export class ValueFormatError extends Error {
  override name = 'ValueFormatError';
  /** The kind's wire form (`int32`, `array<date>`). */
  readonly kind: string;
  /** What is wrong, without the kind and the preview. */
  readonly reason: string;
  constructor(kind: ValueKind, subject: string, reason: string) {
    const name = formatKind(kind);
    super(`${name}: ${reason}: ${subject}`);
    this.kind = name;
    this.reason = reason;
  }
}

/** PostgreSQL's interval fields: months and days are 32-bit, micros 64-bit; each keeps its own sign. */
export interface IntervalValue {
  readonly months: number;
  readonly days: number;
  readonly micros: bigint;
}

/**
 * An array value. Elements of the innermost dimension are values of the element kind or `null`. `lowerBounds`
 * (one per dimension) is present when some lower bound is not 1, or when the number of dimensions cannot be
 * read from the nesting alone (an array of structs whose every struct is NULL or all-NULL); absent, every
 * lower bound is 1.
 */
export interface NeutralArray extends Array<NeutralValue | null> {
  lowerBounds?: number[];
}

export type NeutralValue = boolean | number | bigint | string | Buffer | IntervalValue | NeutralArray;

export const MICROS_PER_DAY = 86_400_000_000n;
/** 4714-11-24 BC (Julian day 0), PostgreSQL's first date and timestamp. */
export const DATE_MIN_DAYS = -2_440_588;
/** 5874897-12-31, PostgreSQL's last date. */
export const DATE_MAX_DAYS = 2_145_042_905;
/** 4714-11-24 00:00:00 BC. */
export const TIMESTAMP_MIN_MICROS = -210_866_803_200_000_000n;
/**
 * 294276-12-31 23:59:59.999999. PostgreSQL counts from 2000-01-01 in an int64; counted from 1970, its last
 * thirty years (from 294247-01-10 04:00:54.775808) are past the int64 maximum, so a sink holding 64-bit
 * micros since 1970 cannot hold them.
 */
export const TIMESTAMP_MAX_MICROS = 9_224_318_015_999_999_999n;

const INT16 = [-32768, 32767] as const;
const INT32 = [-2147483648, 2147483647] as const;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// ─── entry points ────────────────────────────────────────────────────────────────────────────────────────

export function parseValue(text: string, kind: ValueKind): NeutralValue {
  if (typeof text !== 'string') throw new ValueFormatError(kind, preview(text), 'not text');
  switch (kind.kind) {
    case 'boolean':
      if (text === 't') return true;
      if (text === 'f') return false;
      throw refused(kind, text, 'expected t or f');
    case 'int16':
      return parseSmallInt(text, kind, INT16);
    case 'int32':
      return parseSmallInt(text, kind, INT32);
    case 'int64': {
      if (!INTEGER.test(text) || text.length > 20) throw refused(kind, text, 'not a canonical integer');
      const n = BigInt(text);
      if (n < INT64_MIN || n > INT64_MAX) throw refused(kind, text, 'out of range');
      return n;
    }
    case 'float32':
      return parseFloat32(text, kind);
    case 'float64':
      return parseFloat64(text, kind);
    case 'decimal':
      checkDecimal(text, kind);
      return text;
    case 'string':
    case 'enum':
    case 'other':
      if (!isWellFormed(text)) throw refused(kind, text, 'lone UTF-16 surrogate (not UTF-8 encodable)');
      return text;
    case 'json':
      checkJson(text, kind);
      return text;
    case 'uuid':
      if (!UUID.test(text)) throw refused(kind, text, 'expected lowercase 8-4-4-4-12 hex');
      return text;
    case 'bytes':
      return parseBytes(text, kind);
    case 'date':
      return parseDate(text, kind);
    case 'time':
      return parseTime(text, kind);
    case 'timestamp':
      return parseTimestamp(text, kind, false);
    case 'timestamptz':
      return parseTimestamp(text, kind, true);
    case 'interval':
      return parseInterval(text, kind);
    case 'array':
      return parseArray(text, kind, kind.element);
    case 'struct':
      return parseStruct(text, kind);
  }
}

export function formatValue(value: NeutralValue, kind: ValueKind): string {
  switch (kind.kind) {
    case 'boolean':
      if (typeof value !== 'boolean') throw wrongType(kind, value, 'a boolean');
      return value ? 't' : 'f';
    case 'int16':
    case 'int32': {
      const [min, max] = kind.kind === 'int16' ? INT16 : INT32;
      if (typeof value !== 'number' || !Number.isInteger(value)) throw wrongType(kind, value, 'an integer number');
      if (value < min || value > max) throw new ValueFormatError(kind, preview(value), 'out of range');
      return String(value);
    }
    case 'int64':
      if (typeof value !== 'bigint') throw wrongType(kind, value, 'a bigint');
      if (value < INT64_MIN || value > INT64_MAX) throw new ValueFormatError(kind, preview(value), 'out of range');
      return value.toString();
    case 'float32':
      if (typeof value !== 'number') throw wrongType(kind, value, 'a number');
      if (Math.fround(value) !== value && !Number.isNaN(value)) {
        throw new ValueFormatError(kind, preview(value), 'not exactly representable in 32 bits (use Math.fround)');
      }
      return formatFloat32(value);
    case 'float64':
      if (typeof value !== 'number') throw wrongType(kind, value, 'a number');
      return formatFloat64(value);
    case 'decimal':
      if (typeof value !== 'string' && typeof value !== 'bigint') throw wrongType(kind, value, 'a decimal string or a bigint');
      return normalizeDecimal(value, kind);
    case 'string':
    case 'enum':
    case 'other':
    case 'json':
    case 'uuid':
      if (typeof value !== 'string') throw wrongType(kind, value, 'a string');
      parseValue(value, kind);
      return value;
    case 'bytes':
      if (!Buffer.isBuffer(value)) throw wrongType(kind, value, 'a Buffer');
      return `\\x${value.toString('hex')}`;
    case 'date':
      if (typeof value !== 'number') throw wrongType(kind, value, 'a number of days');
      return formatDate(value, kind);
    case 'time':
      if (typeof value !== 'bigint') throw wrongType(kind, value, 'a bigint of microseconds');
      if (value < 0n || value > MICROS_PER_DAY) throw new ValueFormatError(kind, preview(value), 'out of range (0 to 24:00:00)');
      return microsToTimeText(value);
    case 'timestamp':
    case 'timestamptz':
      if (typeof value !== 'bigint' && value !== Infinity && value !== -Infinity) {
        throw wrongType(kind, value, 'a bigint of microseconds or ±Infinity');
      }
      if (typeof value === 'bigint' && (value < TIMESTAMP_MIN_MICROS || value > TIMESTAMP_MAX_MICROS)) {
        throw new ValueFormatError(kind, preview(value), 'out of range (4714-11-24 BC to 294276-12-31)');
      }
      return microsToTimestampText(value, kind.kind === 'timestamptz');
    case 'interval':
      return formatIntervalValue(value, kind);
    case 'array':
      if (!Array.isArray(value)) throw wrongType(kind, value, 'an array');
      return formatArray(value, kind, kind.element);
    case 'struct':
      return formatStruct(value, kind);
  }
}

// ─── errors ──────────────────────────────────────────────────────────────────────────────────────────────

function preview(value: unknown): string {
  let shown: string;
  if (typeof value === 'string') shown = value;
  else if (typeof value === 'bigint') shown = `${value}n`;
  else if (Buffer.isBuffer(value)) shown = `<Buffer ${value.subarray(0, 16).toString('hex')}${value.length > 16 ? '…' : ''}>`;
  else if (Array.isArray(value)) shown = `array(${value.length})`;
  else if (typeof value === 'object' && value !== null) shown = `object {${Object.keys(value).slice(0, 4).join(', ')}}`;
  else shown = typeof value === 'number' && Object.is(value, -0) ? '-0' : String(value);
  if (typeof value !== 'string') return shown.length > 60 ? `${shown.slice(0, 60)}…` : shown;
  // JSON quoting keeps it on one line (newlines, tabs and controls escaped).
  return JSON.stringify(shown.length > 60 ? `${shown.slice(0, 60)}…` : shown);
}

function refused(kind: ValueKind, text: string, reason: string): ValueFormatError {
  return new ValueFormatError(kind, preview(text), reason);
}

function wrongType(kind: ValueKind, value: unknown, expected: string): ValueFormatError {
  const got = value === null ? 'null' : Array.isArray(value) ? 'array' : Buffer.isBuffer(value) ? 'Buffer' : typeof value;
  return new ValueFormatError(kind, preview(value), `expected ${expected}, got ${got}`);
}

// ─── integers ────────────────────────────────────────────────────────────────────────────────────────────

const INTEGER = /^(?:0|-?[1-9][0-9]*)$/;

function parseSmallInt(text: string, kind: ValueKind, [min, max]: readonly [number, number]): number {
  if (!INTEGER.test(text) || text.length > 11) throw refused(kind, text, 'not a canonical integer');
  const n = Number(text);
  if (n < min || n > max) throw refused(kind, text, 'out of range');
  return n;
}

// ─── floats ──────────────────────────────────────────────────────────────────────────────────────────────

/**
 * PostgreSQL's float8 output with extra_float_digits > 0 (Ryu's d2s as PostgreSQL builds it): the shortest
 * decimal strictly inside the interval of reals that read back as the same double, in fixed notation when the
 * decimal exponent is in [-4, 15), otherwise `d.ddde±XX` with at least two exponent digits.
 *
 * "Strictly": PostgreSQL builds Ryu with STRICTLY_SHORTEST 0, so it never prints a decimal that lies exactly
 * halfway between two doubles (reading it back relies on round-half-even), even where that decimal is shorter.
 * JavaScript's shortest digits do accept such a midpoint for an even mantissa; otherwise they are the same
 * digits (the closest of the shortest, ties to even). So JavaScript's digits are used unless they could be a
 * midpoint, which needs at least as many decimal fraction digits as the midpoint has binary ones (in practice
 * only for |x| ≥ 2^52 or so), and then the digits are found exactly.
 */
export function formatFloat64(x: number): string {
  const special = specialFloat(x);
  if (special !== undefined) return special;
  const e = Math.abs(x).toExponential(); // shortest round-trip digits: "1.2345e-7"
  const at = e.indexOf('e');
  const mantissa = e.slice(0, at);
  let digits = mantissa.length === 1 ? mantissa : mantissa[0]! + mantissa.slice(2);
  let exponent = Number(e.slice(at + 1));
  // Could digits × 10^j be a midpoint next to x = m × 2^e2, odd × 2^(e2-1) (or 2^(e2-2) below a power of
  // two) with the odd part below 2^55? Only with at least 1 - e2 fraction digits, and with |j| ≤ 24: the odd
  // part holds 5^j when j > 0, and 5^-j must divide the (at most 17) digits when j < 0.
  const j = exponent - digits.length + 1;
  SCRATCH.setFloat64(0, x);
  const ieeeExponent = (SCRATCH.getUint16(0) >> 4) & 0x7ff;
  const e2 = (ieeeExponent === 0 ? 1 : ieeeExponent) - 1075;
  if (j >= -24 && j <= 23 && 1 - e2 <= Math.max(0, -j)) ({ digits, exponent } = shortestFloat64Digits(x));
  return layoutFloat(x < 0, digits, exponent, 15);
}

/**
 * PostgreSQL's float4 output with extra_float_digits > 0 (Ryu's f2s, built as for float8 above): the shortest
 * decimal strictly inside the interval that reads back as the same 32-bit float, fixed notation for decimal
 * exponents in [-4, 6). JavaScript has no shortest float32 printer, so the digits are found exactly.
 */
export function formatFloat32(x: number): string {
  const special = specialFloat(x);
  if (special !== undefined) return special;
  SCRATCH.setFloat32(0, x);
  const bits = SCRATCH.getUint32(0);
  const ieeeExponent = (bits >>> 23) & 0xff;
  const ieeeMantissa = bits & 0x7fffff;
  const m2 = ieeeExponent === 0 ? ieeeMantissa : ieeeMantissa | 0x800000;
  const e2 = (ieeeExponent === 0 ? 1 : ieeeExponent) - 127 - 23;
  const { digits, exponent } = shortestDigits(BigInt(m2), e2, ieeeMantissa === 0 && ieeeExponent > 1, Math.abs(x));
  return layoutFloat(x < 0, digits, exponent, 6);
}

/** PostgreSQL's float8 digits of |x| found exactly (formatFloat64 uses it where JavaScript's may differ). */
export function shortestFloat64Digits(x: number): { digits: string; exponent: number } {
  SCRATCH.setFloat64(0, Math.abs(x));
  const bits = SCRATCH.getBigUint64(0);
  const ieeeExponent = Number(bits >> 52n);
  const ieeeMantissa = bits & ((1n << 52n) - 1n);
  const m2 = ieeeExponent === 0 ? ieeeMantissa : ieeeMantissa | (1n << 52n);
  const e2 = (ieeeExponent === 0 ? 1 : ieeeExponent) - 1023 - 52;
  return shortestDigits(m2, e2, ieeeMantissa === 0n && ieeeExponent > 1, Math.abs(x));
}

/** Shared scratch for reading float bits (JavaScript is single-threaded; nothing awaits while it is in use). */
const SCRATCH = new DataView(new ArrayBuffer(8));

function specialFloat(x: number): string | undefined {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  return undefined;
}

/**
 * The shortest decimal `digits × 10^(exponent - digits.length + 1)` strictly inside the interval of reals that
 * round to `m2 × 2^e2` (bounds excluded, as PostgreSQL's Ryu does), and of those the closest to it, ties to
 * an even last digit. `lowerGapHalved`: m2 is a power of two above the smallest exponent, so the next float
 * below is half as far as the next above. Exact (bigint) arithmetic; a dozen steps at most.
 */
function shortestDigits(m2: bigint, e2: number, lowerGapHalved: boolean, approx: number): { digits: string; exponent: number } {
  // In units of 2^(e2-2): the value, the upper and the lower bound of its rounding interval, over `den`.
  let mv = 4n * m2;
  let mp = mv + 2n;
  let mm = mv - (lowerGapHalved ? 1n : 2n);
  let den = 1n;
  const shift = e2 - 2;
  if (shift >= 0) {
    const s = BigInt(shift);
    mv <<= s;
    mp <<= s;
    mm <<= s;
  } else {
    den = 1n << BigInt(-shift);
  }
  // Candidates at scale 10^k are the integers q with q × 10^k strictly inside (mm, mp) / den. If some exist
  // at k, they exist at every smaller k: binary search for the largest k that has one (fewest digits).
  const range = (k: number): [lo: bigint, hi: bigint, scaledV: bigint, d: bigint] => {
    const up = k >= 0 ? pow10(k) : 1n;
    const down = k >= 0 ? 1n : pow10(-k);
    const d = den * up;
    const hiN = mp * down;
    const loN = mm * down;
    let hi = hiN / d;
    if (hi * d === hiN) hi -= 1n;
    const lo = loN / d + 1n; // smallest integer strictly above loN / d
    return [lo, hi, mv * down, d];
  };
  const top = Math.floor(Math.log10(approx)) + 2; // 10^top > 10 × value: no candidate
  // The interval is at least 3 × 2^(e2-2) wide, and an open interval wider than 10^k holds a multiple of 10^k.
  let low = Math.min(top - 1, Math.floor(Math.log10(3) + (e2 - 2) * Math.LOG10E * Math.LN2) - 1);
  while (range(low)[0] > range(low)[1]) low -= 1; // floating-point slack in the estimate, never in practice
  let high = top;
  while (high - low > 1) {
    const mid = (low + high) >> 1;
    const [lo, hi] = range(mid);
    if (lo <= hi) low = mid;
    else high = mid;
  }
  const [lo, hi, vN, d] = range(low);
  let q = vN / d;
  const twice = 2n * (vN - q * d);
  if (twice > d || (twice === d && (q & 1n) === 1n)) q += 1n; // nearest, ties to even
  if (q < lo) q = lo;
  else if (q > hi) q = hi;
  const all = q.toString();
  const exponent = low + all.length - 1;
  let end = all.length;
  while (end > 1 && all.charCodeAt(end - 1) === 48) end--;
  return { digits: all.slice(0, end), exponent };
}

const POW10: bigint[] = [1n];
function pow10(n: number): bigint {
  while (POW10.length <= n) POW10.push(POW10[POW10.length - 1]! * 10n);
  return POW10[n]!;
}

/** Ryu's layout in PostgreSQL: fixed for exponents in [-4, fixedBelow), else `d.ddde±XX`. */
function layoutFloat(negative: boolean, digits: string, exponent: number, fixedBelow: number): string {
  let s: string;
  if (exponent >= -4 && exponent < fixedBelow) {
    if (exponent < 0) s = `0.${'0'.repeat(-exponent - 1)}${digits}`;
    else if (digits.length <= exponent + 1) s = digits + '0'.repeat(exponent + 1 - digits.length);
    else s = `${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
  } else {
    const abs = Math.abs(exponent);
    s = `${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${exponent < 0 ? '-' : '+'}${abs < 10 ? '0' : ''}${abs}`;
  }
  return negative ? `-${s}` : s;
}

const FLOAT_TEXT = /^-?(?:[0-9]+(?:\.[0-9]+)?(?:e[-+][0-9]+)?|Infinity)$|^NaN$/;

function parseFloat64(text: string, kind: ValueKind): number {
  if (!FLOAT_TEXT.test(text)) throw refused(kind, text, 'not a canonical float');
  const x = Number(text);
  if (formatFloat64(x) !== text) throw refused(kind, text, `not canonical (PostgreSQL prints ${formatFloat64(x)})`);
  return x;
}

function parseFloat32(text: string, kind: ValueKind): number {
  if (!FLOAT_TEXT.test(text)) throw refused(kind, text, 'not a canonical float');
  const x = readFloat32(text);
  if (formatFloat32(x) !== text) throw refused(kind, text, `not canonical (PostgreSQL prints ${formatFloat32(x)})`);
  return x;
}

/**
 * Decimal text to the nearest float32 (as strtof does). Reading a double first and then rounding it to 32
 * bits can round twice: when the double lands exactly halfway between two float32s, decide on the exact text.
 */
function readFloat32(text: string): number {
  const v = Number(text);
  const f = Math.fround(v);
  if (f === v || !Number.isFinite(f)) return f;
  const other = nextFloat32(f, v > f);
  if ((f + other) / 2 !== v) return f;
  const cmp = compareDecimalWithDouble(text, v);
  const [low, high] = f < other ? [f, other] : [other, f];
  if (cmp > 0) return high; // the text is above the midpoint
  if (cmp < 0) return low;
  return (float32Bits(low) & 1) === 0 ? low : high; // exactly halfway: ties to even
}

function float32Bits(x: number): number {
  SCRATCH.setFloat32(0, x);
  return SCRATCH.getUint32(0);
}

function nextFloat32(f: number, up: boolean): number {
  SCRATCH.setFloat32(0, f);
  const bits = SCRATCH.getUint32(0);
  // For positive f the bit pattern grows with the value; for negative f it shrinks.
  const towardLarger = up === f > 0 || (f === 0 && up);
  SCRATCH.setUint32(0, towardLarger ? bits + 1 : bits - 1);
  return SCRATCH.getFloat32(0);
}

/** Sign of (decimal text − double), exactly. Both finite. */
function compareDecimalWithDouble(text: string, v: number): number {
  const m = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:e([-+][0-9]+))?$/.exec(text)!;
  const negative = m[1] === '-';
  const frac = m[3] ?? '';
  let num = BigInt(m[2]! + frac);
  const exp10 = Number(m[4] ?? '0') - frac.length;
  if (negative) num = -num;
  // v = mant × 2^exp2
  SCRATCH.setFloat64(0, v);
  const bits = SCRATCH.getBigUint64(0);
  const ieeeExponent = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  if (ieeeExponent !== 0) mant |= 1n << 52n;
  if (bits >> 63n) mant = -mant;
  const exp2 = (ieeeExponent === 0 ? 1 : ieeeExponent) - 1075;
  // Compare num × 10^exp10 with mant × 2^exp2 as integers.
  let left = num;
  let right = mant;
  if (exp10 >= 0) left *= 10n ** BigInt(exp10);
  else right *= 10n ** BigInt(-exp10);
  if (exp2 >= 0) right <<= BigInt(exp2);
  else left <<= BigInt(-exp2);
  return left > right ? 1 : left < right ? -1 : 0;
}

// ─── decimal ─────────────────────────────────────────────────────────────────────────────────────────────

const DECIMAL_TEXT = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?$/;
/** numeric's limits: 131072 digits before the point, 16383 after. */
const MAX_INTEGER_DIGITS = 131072;
const MAX_SCALE = 16383;

type DecimalKind = Extract<ValueKind, { kind: 'decimal' }>;

/** The scale every value of the kind prints with, or null when each value keeps its own (bare numeric). */
function fixedScale(kind: DecimalKind): number | null {
  if (kind.precision === null) return null;
  return kind.scale ?? 0;
}

function checkDecimal(text: string, kind: DecimalKind): void {
  if (text === 'NaN') return;
  if (text === 'Infinity' || text === '-Infinity') {
    if (kind.precision !== null) throw refused(kind, text, 'a decimal with a precision cannot hold an infinite value');
    return;
  }
  const m = DECIMAL_TEXT.exec(text);
  if (!m) throw refused(kind, text, 'not a canonical decimal (-?digits(.digits)?)');
  const integer = m[2]!;
  const fraction = m[3] ?? '';
  if (m[1] === '-' && integer === '0' && /^0*$/.test(fraction)) throw refused(kind, text, 'negative zero (PostgreSQL prints 0)');
  checkDecimalFits(kind, text, integer, fraction);
}

function checkDecimalFits(kind: DecimalKind, text: string, integer: string, fraction: string): void {
  const scale = fixedScale(kind);
  if (scale === null) {
    if (integer.length > MAX_INTEGER_DIGITS || fraction.length > MAX_SCALE) throw refused(kind, text, 'more digits than numeric holds');
    return;
  }
  if (scale > 0 ? fraction.length !== scale : fraction.length !== 0) {
    throw refused(kind, text, `expected exactly ${Math.max(scale, 0)} digits after the point`);
  }
  if (scale < 0 && integer !== '0' && !integer.endsWith('0'.repeat(-scale))) {
    throw refused(kind, text, `scale ${scale} keeps the last ${-scale} digits zero`);
  }
  // |value| < 10^(precision - scale): the exponent of the leading digit must be below precision - scale.
  const firstInFraction = fraction.search(/[1-9]/);
  if (integer === '0' && firstInFraction === -1) return; // zero fits every precision
  const leading = integer !== '0' ? integer.length - 1 : -(firstInFraction + 1);
  if (leading >= kind.precision! - scale) throw refused(kind, text, `too many digits for precision ${kind.precision}, scale ${scale}`);
}

const LENIENT_DECIMAL = /^([-+]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([-+]?[0-9]{1,6}))?$/;

/**
 * Any plain decimal notation (`+01.5`, `.5`, `1e3`, `-0`) or a bigint, in the kind's canonical text: the
 * kind's scale is applied by adding zeros, never by rounding (a value with more nonzero digits than the scale
 * keeps is refused). For a bare decimal the scale is the text's own, as numeric reads it (`1.50` → `1.50`,
 * `1.5e-3` → `0.0015`, `1.50e1` → `15.0`).
 */
export function normalizeDecimal(value: string | bigint, kind: ValueKind): string {
  if (kind.kind !== 'decimal') throw new ValueFormatError(kind, preview(value), 'not a decimal kind');
  const text = typeof value === 'bigint' ? value.toString() : value;
  if (text === 'NaN' || text === 'Infinity' || text === '-Infinity') {
    checkDecimal(text, kind);
    return text;
  }
  const m = LENIENT_DECIMAL.exec(text);
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) throw refused(kind, text, 'not a decimal number');
  const digits = m[2]! + (m[3] ?? '');
  // value = digits × 10^-shift
  const shift = (m[3] ?? '').length - Number(m[4] ?? '0');
  const ownScale = Math.max(0, shift);
  const scale = fixedScale(kind) ?? ownScale;
  let body = digits.replace(/^0+/, '');
  // Bring to exactly `scale` fraction digits: add zeros or drop zeros (never nonzero digits).
  if (scale >= shift) {
    body += '0'.repeat(scale - shift);
  } else {
    const drop = shift - scale;
    const dropped = body.slice(Math.max(0, body.length - drop));
    if (/[1-9]/.test(dropped)) throw refused(kind, text, `more digits than scale ${scale} keeps (would round)`);
    body = body.slice(0, Math.max(0, body.length - drop));
  }
  let integer: string;
  let fraction: string;
  if (scale > 0) {
    body = body.padStart(scale + 1, '0');
    integer = body.slice(0, body.length - scale).replace(/^0+(?=.)/, '');
    fraction = body.slice(body.length - scale);
  } else {
    integer = (body + '0'.repeat(-scale)).replace(/^0+(?=.)/, '') || '0';
    fraction = '';
  }
  const zero = /^0*$/.test(integer + fraction);
  const out = `${m[1] === '-' && !zero ? '-' : ''}${integer}${fraction ? `.${fraction}` : ''}`;
  checkDecimal(out, kind);
  return out;
}

// ─── text kinds ──────────────────────────────────────────────────────────────────────────────────────────

/** String.prototype.isWellFormed (Node 20; the project's TypeScript lib predates it). */
function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function checkJson(text: string, kind: ValueKind): void {
  try {
    JSON.parse(text);
  } catch {
    throw refused(kind, text, 'not JSON');
  }
}

const HEX = /^[0-9a-f]*$/;

function parseBytes(text: string, kind: ValueKind): Buffer {
  if (!text.startsWith('\\x') || text.length % 2 !== 0) throw refused(kind, text, 'expected \\x and pairs of lowercase hex digits');
  const hex = text.slice(2);
  if (!HEX.test(hex)) throw refused(kind, text, 'expected \\x and pairs of lowercase hex digits');
  return Buffer.from(hex, 'hex');
}

// ─── dates and times ─────────────────────────────────────────────────────────────────────────────────────

/** Days since 1970-01-01 of a proleptic Gregorian date; `year` is astronomical (1 BC is 0, 2 BC is -1). */
export function civilToDays(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** The proleptic Gregorian date of a day count since 1970-01-01; `year` is astronomical. */
export function daysToCivil(days: number): { year: number; month: number; day: number } {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** `YYYY-MM-DD` and whether it is BC (the suffix goes after a time when there is one). */
function datePart(days: number): [string, boolean] {
  const { year, month, day } = daysToCivil(days);
  const bc = year <= 0;
  const shown = bc ? 1 - year : year;
  return [`${shown < 1000 ? String(shown).padStart(4, '0') : shown}-${pad2(month)}-${pad2(day)}`, bc];
}

/** The canonical date text of a day count since 1970-01-01 (`infinity`, `-infinity` for ±Infinity). */
export function daysToIsoDate(days: number): string {
  if (days === Infinity) return 'infinity';
  if (days === -Infinity) return '-infinity';
  const [text, bc] = datePart(days);
  return bc ? `${text} BC` : text;
}

function formatDate(days: number, kind: ValueKind): string {
  if (!Number.isInteger(days) && Math.abs(days) !== Infinity) throw new ValueFormatError(kind, preview(days), 'not a whole number of days');
  if (Number.isFinite(days) && (days < DATE_MIN_DAYS || days > DATE_MAX_DAYS)) {
    throw new ValueFormatError(kind, preview(days), 'out of range (4714-11-24 BC to 5874897-12-31)');
  }
  return daysToIsoDate(days === 0 ? 0 : days); // -0 days is day 0
}

const DATE_TEXT = /^([0-9]{4,7})-([0-9]{2})-([0-9]{2})/;

/** Reads `YYYY-MM-DD` at the start of text; returns the days and the length read. Null when malformed. */
function readDate(text: string): { year: number; month: number; day: number; length: number } | null {
  const m = DATE_TEXT.exec(text);
  if (!m) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (year < 1 || month < 1 || month > 12 || day < 1) return null;
  return { year, month, day, length: m[0].length };
}

function parseDate(text: string, kind: ValueKind): number {
  if (text === 'infinity') return Infinity;
  if (text === '-infinity') return -Infinity;
  const d = readDate(text);
  const rest = d ? text.slice(d.length) : '';
  if (!d || (rest !== '' && rest !== ' BC')) throw refused(kind, text, 'expected YYYY-MM-DD[ BC] or ±infinity');
  const year = rest === ' BC' ? 1 - d.year : d.year;
  if (d.day > daysInMonth(year, d.month)) throw refused(kind, text, 'no such day');
  const days = civilToDays(year, d.month, d.day);
  if (days < DATE_MIN_DAYS || days > DATE_MAX_DAYS) throw refused(kind, text, 'out of range (4714-11-24 BC to 5874897-12-31)');
  if (daysToIsoDate(days) !== text) throw refused(kind, text, `not canonical (expected ${daysToIsoDate(days)})`);
  return days;
}

/** `HH:MM:SS[.ffffff]` (trailing zeros of the fraction trimmed) of microseconds since midnight, 0 to 24:00:00. */
export function microsToTimeText(micros: bigint | number): string {
  const t = Number(micros);
  const seconds = Math.floor(t / 1e6);
  const fraction = t - seconds * 1e6;
  const h = Math.floor(seconds / 3600);
  const rest = seconds - h * 3600;
  const min = Math.floor(rest / 60);
  return `${pad2(h)}:${pad2(min)}:${pad2(rest - min * 60)}${fractionText(fraction)}`;
}

/** `.ffffff` with trailing zeros trimmed, '' for 0; fraction in microseconds (0 to 999999). */
function fractionText(fraction: number): string {
  if (fraction === 0) return '';
  let s = String(fraction).padStart(6, '0');
  let end = 6;
  while (s.charCodeAt(end - 1) === 48) end--;
  s = s.slice(0, end);
  return `.${s}`;
}

const TIME_TEXT = /^([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?/;

/** Reads `HH:MM:SS[.f]` at the start of text: micros since midnight and the length read; null when malformed. */
function readTime(text: string): { micros: number; length: number } | null {
  const m = TIME_TEXT.exec(text);
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  const s = Number(m[3]);
  if (h > 24 || min > 59 || s > 59) return null;
  const fraction = m[4] === undefined ? 0 : Number(m[4].padEnd(6, '0'));
  return { micros: ((h * 60 + min) * 60 + s) * 1e6 + fraction, length: m[0].length };
}

function parseTime(text: string, kind: ValueKind): bigint {
  const t = readTime(text);
  if (!t || t.length !== text.length) throw refused(kind, text, 'expected HH:MM:SS[.ffffff]');
  if (t.micros > 86_400_000_000) throw refused(kind, text, 'past 24:00:00');
  if (microsToTimeText(t.micros) !== text) throw refused(kind, text, `not canonical (expected ${microsToTimeText(t.micros)})`);
  return BigInt(t.micros);
}

/**
 * The canonical timestamp text of microseconds since 1970-01-01 00:00:00 (`infinity`, `-infinity` for
 * ±Infinity); with `withZone`, the timestamptz text (`+00` before any ` BC`).
 */
export function microsToTimestampText(micros: bigint | number, withZone = false): string {
  if (micros === Infinity) return 'infinity';
  if (micros === -Infinity) return '-infinity';
  const m = BigInt(micros);
  let days = m / MICROS_PER_DAY;
  let rest = m - days * MICROS_PER_DAY;
  if (rest < 0n) {
    days -= 1n;
    rest += MICROS_PER_DAY;
  }
  const [date, bc] = datePart(Number(days));
  return `${date} ${microsToTimeText(rest)}${withZone ? '+00' : ''}${bc ? ' BC' : ''}`;
}

function parseTimestamp(text: string, kind: ValueKind, withZone: boolean): bigint | number {
  if (text === 'infinity') return Infinity;
  if (text === '-infinity') return -Infinity;
  const shape = withZone ? 'YYYY-MM-DD HH:MM:SS[.ffffff]+00[ BC]' : 'YYYY-MM-DD HH:MM:SS[.ffffff][ BC]';
  const d = readDate(text);
  const t = d && text[d.length] === ' ' ? readTime(text.slice(d.length + 1)) : null;
  if (!d || !t) throw refused(kind, text, `expected ${shape} or ±infinity`);
  let rest = text.slice(d.length + 1 + t.length);
  if (withZone) {
    if (!rest.startsWith('+00')) throw refused(kind, text, `expected ${shape} (always in UTC)`);
    rest = rest.slice(3);
  }
  if (rest !== '' && rest !== ' BC') throw refused(kind, text, `expected ${shape} or ±infinity`);
  const year = rest === ' BC' ? 1 - d.year : d.year;
  if (d.day > daysInMonth(year, d.month)) throw refused(kind, text, 'no such day');
  const micros = BigInt(civilToDays(year, d.month, d.day)) * MICROS_PER_DAY + BigInt(t.micros);
  if (micros < TIMESTAMP_MIN_MICROS || micros > TIMESTAMP_MAX_MICROS) throw refused(kind, text, 'out of range (4714-11-24 BC to 294276-12-31)');
  const canonical = microsToTimestampText(micros, withZone);
  if (canonical !== text) throw refused(kind, text, `not canonical (expected ${canonical})`);
  return micros;
}

// ─── interval ────────────────────────────────────────────────────────────────────────────────────────────

const HOUR = 3_600_000_000n;
const MINUTE = 60_000_000n;
const SECOND = 1_000_000n;

/**
 * PostgreSQL's iso_8601 interval output: years and months from `months` (truncating, both with its sign),
 * days, then hours, minutes, seconds from `micros` (each with micros' sign), zero parts left out, `PT0S` for
 * all zero.
 */
export function formatInterval(value: IntervalValue): string {
  const { months, days, micros } = value;
  if (months === 0 && days === 0 && micros === 0n) return 'PT0S';
  const years = Math.trunc(months / 12);
  const mons = months % 12;
  let out = 'P';
  if (years !== 0) out += `${years}Y`;
  if (mons !== 0) out += `${mons}M`;
  if (days !== 0) out += `${days}D`;
  if (micros !== 0n) {
    out += 'T';
    const hours = micros / HOUR;
    let rest = micros - hours * HOUR;
    const minutes = rest / MINUTE;
    rest -= minutes * MINUTE;
    if (hours !== 0n) out += `${hours}H`;
    if (minutes !== 0n) out += `${minutes}M`;
    if (rest !== 0n) {
      const abs = rest < 0n ? -rest : rest;
      const seconds = abs / SECOND;
      out += `${rest < 0n ? '-' : ''}${seconds}${fractionText(Number(abs - seconds * SECOND))}S`;
    }
  }
  return out;
}

function formatIntervalValue(value: NeutralValue, kind: ValueKind): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Buffer.isBuffer(value)) {
    throw wrongType(kind, value, 'an interval { months, days, micros }');
  }
  const { months, days, micros } = value as IntervalValue;
  if (!isInt32(months) || !isInt32(days) || typeof micros !== 'bigint') {
    throw wrongType(kind, value, 'an interval { months: int32, days: int32, micros: bigint }');
  }
  if (micros < INT64_MIN || micros > INT64_MAX) throw new ValueFormatError(kind, preview(micros), 'micros out of the 64-bit range');
  return formatInterval({ months: months + 0, days: days + 0, micros }); // + 0: no -0 fields
}

function isInt32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= INT32[0] && n <= INT32[1];
}

const INTERVAL_TEXT =
  /^P(?:(-?[0-9]{1,10})Y)?(?:(-?[0-9]{1,10})M)?(?:(-?[0-9]{1,10})D)?(?:T(?:(-?[0-9]{1,10})H)?(?:(-?[0-9]{1,10})M)?(?:(-?)([0-9]{1,13})(?:\.([0-9]{1,6}))?S)?)?$/;

function parseInterval(text: string, kind: ValueKind): IntervalValue {
  const m = INTERVAL_TEXT.exec(text);
  if (!m) throw refused(kind, text, 'expected ISO 8601 PnYnMnDTnHnMnS');
  const months = Number(m[1] ?? 0) * 12 + Number(m[2] ?? 0);
  const days = Number(m[3] ?? 0);
  let seconds = BigInt(m[7] ?? 0) * SECOND + BigInt((m[8] ?? '').padEnd(6, '0') || 0);
  if (m[6] === '-') seconds = -seconds;
  const micros = BigInt(m[4] ?? 0) * HOUR + BigInt(m[5] ?? 0) * MINUTE + seconds;
  if (!isInt32(months) || !isInt32(days) || micros < INT64_MIN || micros > INT64_MAX) throw refused(kind, text, 'out of range');
  const value = { months: months + 0, days: days + 0, micros };
  const canonical = formatInterval(value);
  if (canonical !== text) throw refused(kind, text, `not canonical (expected ${canonical})`);
  return value;
}

// ─── arrays ──────────────────────────────────────────────────────────────────────────────────────────────

/** The lower bounds of an array value (1 for each dimension unless its `lowerBounds` says otherwise). */
export function arrayLowerBounds(value: NeutralArray, element: ValueKind): number[] {
  return value.lowerBounds ?? new Array<number>(arrayDimensions(value, element)).fill(1);
}

/**
 * The number of dimensions of an array value: its `lowerBounds`' length when present, otherwise read from the
 * nesting (for struct elements, which are arrays themselves, the innermost arrays that hold no array are the
 * structs). 0 for the empty array.
 */
export function arrayDimensions(value: NeutralArray, element: ValueKind): number {
  if (value.lowerBounds !== undefined) return value.lowerBounds.length;
  if (value.length === 0) return 0;
  let dims = 1;
  let level: readonly unknown[] = value;
  for (;;) {
    if (element.kind === 'struct') {
      const sub = level.find((e) => Array.isArray(e) && e.some((f: unknown) => Array.isArray(f)));
      if (sub === undefined) return dims;
      level = sub as unknown[];
    } else {
      const first = level[0];
      if (!Array.isArray(first)) return dims;
      level = first;
    }
    dims++;
  }
}

const INT32_MAX = 2147483647;

function formatArray(value: NeutralArray, kind: ValueKind, element: ValueKind): string {
  const dims = arrayDimensions(value, element);
  if (dims === 0) {
    if (value.length !== 0) throw new ValueFormatError(kind, preview(value), 'lowerBounds has no dimension for a non-empty array');
    return '{}';
  }
  const lengths: number[] = [];
  let level: unknown = value;
  for (let d = 0; d < dims; d++) {
    if (!Array.isArray(level) || level.length === 0) {
      throw new ValueFormatError(kind, preview(value), 'a dimension is empty or missing (only the whole array may be empty)');
    }
    lengths.push(level.length);
    level = level[0];
  }
  let out = '';
  const bounds = value.lowerBounds;
  if (bounds !== undefined && bounds.some((b) => b !== 1)) {
    for (let d = 0; d < dims; d++) {
      const lo = bounds[d]!;
      if (!Number.isInteger(lo) || lo < INT32[0] || lo + lengths[d]! - 1 > INT32_MAX) {
        throw new ValueFormatError(kind, preview(value), 'array bounds outside the 32-bit range');
      }
      out += `[${lo}:${lo + lengths[d]! - 1}]`;
    }
    out += '=';
  }
  const emit = (arr: unknown, d: number): string => {
    if (!Array.isArray(arr) || arr.length !== lengths[d]) {
      throw new ValueFormatError(kind, preview(value), 'not rectangular (PostgreSQL arrays have equal lengths per dimension)');
    }
    let s = '{';
    for (let i = 0; i < arr.length; i++) {
      if (i > 0) s += ',';
      const e: unknown = arr[i];
      if (d + 1 < dims) s += emit(e, d + 1);
      else if (e === null) s += 'NULL';
      else s += quoteArrayElement(formatValue(e as NeutralValue, element));
    }
    return `${s}}`;
  };
  return out + emit(value, 0);
}

/** `NULL` in any ASCII case (a non-unicode /i never folds other letters into ASCII). */
const NULL_WORD = /^null$/i;

function isArraySpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13); // space \t \n \v \f \r
}

/** array_out's quoting: empty, NULL in any case, or any of `{}",\` or ASCII whitespace; `"` and `\` escaped. */
function quoteArrayElement(text: string): string {
  let quote = text.length === 0 || NULL_WORD.test(text);
  let escapes = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 || c === 92) escapes = quote = true;
    else if (c === 123 || c === 125 || c === 44 || isArraySpace(c)) quote = true;
  }
  if (!quote) return text;
  return `"${escapes ? text.replace(/["\\]/g, '\\$&') : text}"`;
}

const BOUNDS = /^((?:\[-?[0-9]{1,10}:-?[0-9]{1,10}\])+)=/;

function parseArray(text: string, kind: ValueKind, element: ValueKind): NeutralArray {
  let pos = 0;
  let bounds: number[] | undefined;
  const b = BOUNDS.exec(text);
  if (b) {
    bounds = [...b[1]!.matchAll(/\[(-?[0-9]+):(-?[0-9]+)\]/g)].flatMap((p) => [Number(p[1]), Number(p[2])]);
    pos = b[0].length;
  }
  let leafDepth = -1;
  const fail = (reason: string): never => {
    throw refused(kind, text, reason);
  };
  const level = (depth: number): NeutralArray => {
    // text[pos] is '{'
    pos++;
    const out: NeutralArray = [];
    if (text[pos] === '}') {
      if (depth > 1 || bounds !== undefined) fail('empty sub-array');
      pos++;
      return out;
    }
    for (;;) {
      if (text[pos] === '{') {
        if (leafDepth !== -1 && depth >= leafDepth) fail('elements at different depths');
        out.push(level(depth + 1));
      } else {
        if (leafDepth === -1) leafDepth = depth;
        else if (leafDepth !== depth) fail('elements at different depths');
        out.push(element_());
      }
      const c = text[pos++];
      if (c === '}') return out;
      if (c !== ',') fail(`expected , or } at offset ${pos - 1}`);
    }
  };
  const element_ = (): NeutralValue | null => {
    let raw: string;
    if (text[pos] === '"') {
      pos++;
      raw = '';
      for (;;) {
        const at = text.indexOf('"', pos);
        const slash = text.indexOf('\\', pos);
        if (at === -1) fail('unterminated quoted element');
        if (slash !== -1 && slash < at) {
          raw += text.slice(pos, slash) + text.charAt(slash + 1);
          pos = slash + 2;
          continue;
        }
        raw += text.slice(pos, at);
        pos = at + 1;
        break;
      }
    } else {
      const start = pos;
      while (pos < text.length) {
        const c = text.charCodeAt(pos);
        if (c === 44 || c === 125) break; // , }
        if (c === 34 || c === 92 || c === 123 || isArraySpace(c)) fail('unquoted element with a character PostgreSQL quotes');
        pos++;
      }
      raw = text.slice(start, pos);
      if (raw === 'NULL') return null;
      if (raw === '') fail('empty unquoted element');
    }
    try {
      return parseValue(raw, element);
    } catch (error) {
      if (error instanceof ValueFormatError) fail(`element: ${error.message}`);
      throw error;
    }
  };
  if (text[pos] !== '{') fail('expected { (or [lo:hi]={)');
  const value = level(1);
  if (pos !== text.length) fail('text after the closing }');
  const dims = value.length === 0 ? 0 : leafDepth === -1 ? 1 : leafDepth;
  if (bounds !== undefined) {
    if (bounds.length / 2 !== dims) fail('bounds and dimensions differ');
    const lowers: number[] = [];
    let lvl: unknown = value;
    for (let d = 0; d < dims; d++) {
      const lo = bounds[2 * d]!;
      const hi = bounds[2 * d + 1]!;
      if (!Array.isArray(lvl) || hi - lo + 1 !== lvl.length || lo < INT32[0] || hi > INT32_MAX) fail('bounds do not match the elements');
      lowers.push(lo);
      lvl = (lvl as unknown[])[0];
    }
    value.lowerBounds = lowers;
  }
  if (value.lowerBounds?.every((lo) => lo === 1)) delete value.lowerBounds;
  if (arrayDimensions(value, element) !== dims) value.lowerBounds = new Array<number>(dims).fill(1);
  let canonical: string;
  try {
    canonical = formatArray(value, kind, element);
  } catch (error) {
    if (error instanceof ValueFormatError) return fail(error.reason);
    throw error;
  }
  if (canonical !== text) fail('not canonical');
  return value;
}

// ─── struct (record literal) ─────────────────────────────────────────────────────────────────────────────

/** record_out's quoting: empty, or any of `"\(),` or whitespace; `"` and `\` doubled. */
function quoteRecordField(text: string): string {
  let quote = text.length === 0;
  let escapes = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 || c === 92) escapes = quote = true;
    else if (c === 40 || c === 41 || c === 44 || isArraySpace(c)) quote = true;
  }
  if (!quote) return text;
  return `"${escapes ? text.replace(/["\\]/g, '$&$&') : text}"`;
}

function formatStruct(value: NeutralValue, kind: ValueKind): string {
  if (!Array.isArray(value)) throw wrongType(kind, value, 'an array of field texts');
  if (value.length === 0) throw new ValueFormatError(kind, preview(value), 'no fields (PostgreSQL prints () for one NULL field too; a struct has at least one)');
  let out = '(';
  for (let i = 0; i < value.length; i++) {
    if (i > 0) out += ',';
    const f = value[i];
    if (f === null) continue;
    if (typeof f !== 'string') throw wrongType(kind, f, 'field text (string or null)');
    out += quoteRecordField(f);
  }
  return `${out})`;
}

function parseStruct(text: string, kind: ValueKind): (string | null)[] {
  if (text[0] !== '(' || text[text.length - 1] !== ')') throw refused(kind, text, 'expected (field,…)');
  const fields: (string | null)[] = [];
  let pos = 1;
  const end = text.length - 1;
  for (;;) {
    const c = text.charCodeAt(pos);
    if (pos === end || c === 44) {
      fields.push(null);
    } else if (c === 34) {
      let raw = '';
      pos++;
      for (;;) {
        const at = text.indexOf('"', pos);
        const slash = text.indexOf('\\', pos);
        if (at === -1 || at >= end) throw refused(kind, text, 'unterminated quoted field');
        if (slash !== -1 && slash < at) {
          raw += text.slice(pos, slash) + text.charAt(slash + 1);
          pos = slash + 2;
          continue;
        }
        raw += text.slice(pos, at);
        if (text.charCodeAt(at + 1) === 34 && at + 1 < end) {
          raw += '"';
          pos = at + 2;
          continue;
        }
        pos = at + 1;
        break;
      }
      fields.push(raw);
    } else {
      const start = pos;
      while (pos < end && text.charCodeAt(pos) !== 44) pos++;
      fields.push(text.slice(start, pos));
    }
    if (pos === end) break;
    if (text.charCodeAt(pos) !== 44) throw refused(kind, text, `expected , or ) at offset ${pos}`);
    pos++;
  }
  if (formatStruct(fields, kind) !== text) throw refused(kind, text, 'not canonical');
  return fields;
}
