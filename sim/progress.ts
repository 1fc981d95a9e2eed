/**
 * A progress bar on stderr: redrawn in place on a terminal, one line per tenth elsewhere (CI logs), silent when
 * `quiet`. Display only.
 */
export function progressBar(label: string, opts: { quiet?: boolean; stream?: NodeJS.WriteStream } = {}) {
  const stream = opts.stream ?? process.stderr;
  const t0 = Date.now();
  let lastTenth = -1;
  return (done: number, total: number) => {
    if (opts.quiet) return;
    const frac = total === 0 ? 1 : done / total;
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    if (stream.isTTY) {
      const width = 30;
      const full = Math.round(frac * width);
      stream.write(`\r${label} [${"#".repeat(full)}${".".repeat(width - full)}] ${done}/${total} ${secs}s`);
      if (done === total) stream.write("\n");
      return;
    }
    const tenth = Math.floor(frac * 10);
    if (tenth !== lastTenth) {
      lastTenth = tenth;
      stream.write(`${label} ${Math.round(frac * 100)}% (${done}/${total}, ${secs}s)\n`);
    }
  };
}
