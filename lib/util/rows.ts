/**
 * Row counts of large typed arrays.
 *
 * In Deno 2.9 (V8 15.0), code compiled by V8's mid-tier compiler (Maglev) computes
 * `a.length / d` wrong for a typed array of more than 2^31 elements once the function has
 * warmed up on small arrays: the length is taken as a signed 32-bit integer, so an
 * 8.3 GiB store of 544,405 rows x 4,096 came out as -504,171 rows. A store over 8 GiB
 * (2^31 float32 values) is exactly where this happens, so every row count of a store goes
 * through here: the division is done on the byte length, which that compiler keeps whole.
 * `tests/rows_test.ts` warms this function on small arrays and checks it on a 2^31-element
 * array (virtual memory only: its pages are never touched).
 */

/** The number of elements of `a`, also past 2^31. */
export function elementCount(a: ArrayBufferView & { BYTES_PER_ELEMENT: number }): number {
  return a.byteLength / a.BYTES_PER_ELEMENT;
}

/** The number of rows of `width` values in `a` (not rounded: a fraction means a partial row). */
export function rowCount(a: ArrayBufferView & { BYTES_PER_ELEMENT: number }, width: number): number {
  return a.byteLength / (a.BYTES_PER_ELEMENT * width);
}
