/** Microsecond times (bigint since the Unix epoch): a Date would drop the last three digits. */

/** Microseconds since the epoch to ISO 8601 UTC with all six fractional digits. */
export function microsToIso(micros: bigint): string {
  const millis = micros >= 0n ? micros / 1000n : (micros - 999n) / 1000n; // floor, also before 1970
  const rest = Number(micros - millis * 1000n);
  return `${new Date(Number(millis)).toISOString().slice(0, 23)}${String(rest).padStart(3, '0')}Z`;
}

export function nowMicros(): bigint {
  return BigInt(Date.now()) * 1000n;
}
