/** Progress of a streaming job: a redrawn bar on a TTY (rows/s, ETA), plain lines every few seconds otherwise. */
export interface Progress {
  update(rows: number, position: number): void;
  done(rows: number, message: string): void;
}

export interface ProgressOptions {
  /** Shown before the bar. */
  label: string;
  /** Unit of the rate: rows or texts. */
  unit: string;
  /** Total size in `position` units (bytes), for percent and ETA; undefined if unknown. */
  total?: number;
  /** Where to draw; default process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Redraw on a TTY, or print lines; default: stream.isTTY. */
  tty?: boolean;
  /** Seconds between plain lines. Default 2. */
  lineEvery?: number;
}

const BAR = 28;

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? Boolean(stream.isTTY);
  const started = Date.now();
  let startRows: number | undefined;
  let startPos = 0;
  let last = started;
  const every = (opts.lineEvery ?? 2) * 1000;

  const render = (rows: number, position: number): string => {
    startRows ??= rows;
    const secs = Math.max((Date.now() - started) / 1000, 1e-3);
    const rate = (rows - startRows) / secs;
    const frac = opts.total ? Math.min(position / opts.total, 1) : undefined;
    const posRate = (position - startPos) / secs;
    const eta = frac !== undefined && posRate > 0 ? (opts.total! - position) / posRate : undefined;
    const pct = frac === undefined ? '' : `${(frac * 100).toFixed(1).padStart(5)}% `;
    const bar = frac === undefined || !tty ? '' : `[${'#'.repeat(Math.round(frac * BAR)).padEnd(BAR, '.')}] `;
    return `${opts.label} ${bar}${pct}${rows.toLocaleString('en-US')} ${opts.unit} ${Math.round(rate).toLocaleString('en-US')} ${opts.unit}/s${eta !== undefined ? ` ETA ${formatSecs(eta)}` : ''}`;
  };

  return {
    update(rows, position) {
      if (startRows === undefined) {
        startRows = rows;
        startPos = position;
      }
      const t = Date.now();
      if (tty) {
        if (t - last < 100) return;
        last = t;
        stream.write(`\r\x1b[2K${render(rows, position)}`);
      } else if (t - last >= every) {
        last = t;
        stream.write(`${render(rows, position)}\n`);
      }
    },
    done(rows, message) {
      const secs = (Date.now() - started) / 1000;
      stream.write(`${tty ? '\r\x1b[2K' : ''}${opts.label} ${message} (${rows.toLocaleString('en-US')} ${opts.unit} in ${secs.toFixed(1)}s)\n`);
    },
  };
}

function formatSecs(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.ceil(s)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
