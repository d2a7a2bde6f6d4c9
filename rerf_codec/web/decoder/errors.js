// Errors of the JavaScript decoder (mirrors rerf_codec/errors.py).

/** A stream is malformed, truncated or unsupported (FORMAT.md §12 "reject"). */
export class RerfFormatError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'RerfFormatError';
  }
}

/** A source could not deliver bytes (network, HTTP status, timeout, abort). */
export class RerfSourceError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, retryable?: boolean}} [info]
   */
  constructor(message, info = {}) {
    super(message);
    this.name = 'RerfSourceError';
    /** HTTP status when the error came from a response, else 0. */
    this.status = info.status ?? 0;
    /** Whether trying again may help (network errors, 5xx, timeouts; never 4xx). */
    this.retryable = info.retryable ?? false;
  }
}

/** Decoding was cancelled (abort on seek, worker `abort`). */
export class RerfAbortError extends Error {
  constructor(message = 'aborted') {
    super(message);
    this.name = 'RerfAbortError';
  }
}
