/**
 * pino JSON logs (SPEC 11): constant messages, data in fields, a child logger per run and phase.
 * Redaction of credentials is configured once, here.
 */
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

/** Field paths whose values are replaced by `[REDACTED]` in every log line. */
export const REDACT_PATHS = [
  'apiKey',
  'token',
  'password',
  '*.apiKey',
  '*.token',
  '*.password',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'env.AGENTGATE_API_KEY',
  'env.AGENTGATE_GITHUB_TOKEN',
  'env.AGENTGATE_GITLAB_TOKEN',
  'env.ANTHROPIC_API_KEY',
  'env.OPENAI_API_KEY',
  'config.apiKey',
  'config.githubToken',
  'config.gitlabToken',
];

export interface LoggerOptions {
  level?: LevelWithSilent;
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const settings = {
    level: options.level ?? 'info',
    base: { service: 'agentgate' },
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
  };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}

/** A logger that writes nothing (tests, `--json` CLI runs without a log file). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
