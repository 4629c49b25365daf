/** An input file (store, checkpoint, metadata) broke the documented format. */
export class FormatError extends Error {
  /** the file that was being read */
  readonly file: string;
  /**
   * A format error.
   * @param file the file that was being read
   * @param problem what was wrong and what was expected
   */
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.file = file;
    this.name = "FormatError";
  }
}

/** A configuration value (flag, preset field) was out of range or inconsistent. */
export class ConfigError extends Error {
  /**
   * A configuration error.
   * @param message what was wrong and what was expected
   */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}
