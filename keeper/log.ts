/** The keeper's logs: pino JSON lines with levels (logLevel in the config). */
import pino, { type DestinationStream, type Logger } from "pino";

export type { Logger };

/** bigint fields are logged as decimal strings (JSON has no bigint). */
const bigintSafe = (o: Record<string, unknown>) => JSON.parse(JSON.stringify(o, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "ballast-keeper" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: bigintSafe },
    },
    destination,
  );
}

/** A logger that keeps every line in memory (tests). */
export function memoryLogger(level = "debug"): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream: DestinationStream = { write: (s: string) => void lines.push(JSON.parse(s)) };
  return { log: createLogger(level, stream), lines };
}
