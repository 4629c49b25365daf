/** Run output: plain lines to stdout and `train.log`, a live status line on terminals. */

/** Writes log lines and progress. */
export class RunLog {
  #file?: Deno.FsFile;
  #tty: boolean;
  #status = false;
  #lastDraw = 0;
  /** stdout suppressed (lines still go to the file) */
  readonly quiet: boolean;
  /**
   * A log for one run.
   * @param quiet suppress stdout (lines still go to the file)
   */
  constructor(quiet = false) {
    this.quiet = quiet;
    this.#tty = !quiet && Deno.stdout.isTerminal();
  }

  /** Whether a live status line is drawn (stdout is a terminal). */
  get isTerminal(): boolean {
    return this.#tty;
  }

  /** Starts appending to a log file (e.g. `<run>/train.log`). */
  async attach(path: string): Promise<void> {
    this.#file?.close();
    this.#file = await Deno.open(path, { append: true, create: true });
  }

  /** A permanent line. */
  line(msg: string): void {
    if (!this.quiet) {
      if (this.#status) Deno.stdout.writeSync(new TextEncoder().encode("\r\x1b[2K"));
      this.#status = false;
      console.log(msg);
    }
    this.#file?.writeSync(new TextEncoder().encode(msg + "\n"));
  }

  /** A transient status line; only drawn on a terminal, at most 10 times a second. */
  status(msg: string): void {
    if (!this.#tty) return;
    const now = performance.now();
    if (now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    Deno.stdout.writeSync(new TextEncoder().encode(`\r\x1b[2K${msg}`));
    this.#status = true;
  }

  /** Closes the log file. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Formats seconds as m:ss or h:mm:ss. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h
    ? `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`
    : `${m}:${String(sec).padStart(2, "0")}`;
}
