// JSON logs (one object per line) through winston. Child loggers carry context such as the
// reconcile id and the object key, so one reconcile's lines can be followed in any log store.
import winston from 'winston';

export type Logger = winston.Logger;

export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
}
