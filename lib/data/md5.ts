/** The release's per-user seed offset (Python hashlib), apart from rng.ts so that model code needs no node:crypto. */
import { createHash } from "node:crypto";

/** `int(hashlib.md5(str(uid).encode()).hexdigest(), 16) % 2**32` */
export function md5Mod32(id: string): number {
  const hex = createHash("md5").update(id, "utf8").digest("hex");
  return Number(BigInt("0x" + hex) % 4294967296n);
}
