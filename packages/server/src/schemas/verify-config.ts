/**
 * verify.yaml: the gates a run must pass (SPEC section 6).
 *
 * The file is written by the team that owns the repository, often by hand and often copied from older
 * AgentGate versions that used snake_case, so both spellings are accepted. Validation is strict: an unknown
 * key is an error, because a typo such as `requiredFile:` would otherwise silently remove a gate and let an
 * agent pass checks the team thinks are in place.
 */

import { createRequire } from 'node:module';
import type RE2 from 're2';
import { z } from 'zod';
import { tryParseDuration } from './duration.js';
import { parseWithSchema, parseYamlWithSchema } from './errors.js';

/**
 * snake_case spellings accepted for camelCase keys. Only these keys are renamed, at any depth except inside
 * the opaque values listed in {@link OPAQUE_KEYS}; everything else is left for the schema to judge.
 */
export const VERIFY_KEY_ALIASES: Readonly<Record<string, string>> = {
  required_files: 'requiredFiles',
  forbidden_patterns: 'forbiddenPatterns',
  protected_paths: 'protectedPaths',
  expected_exit: 'expectedExit',
  max_runtime_seconds: 'maxRuntimeSeconds',
  json_equals: 'jsonEquals',
  stdin_file: 'stdinFile',
  exit_code: 'exitCode',
};

/** Values compared verbatim (expected JSON): their keys are user data and must never be renamed. */
const OPAQUE_KEYS = new Set(['jsonEquals']);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Renames snake_case aliases to camelCase before validation, so the schema (and every consumer) sees one
 * spelling. Setting both spellings of one key is ambiguous and reported at the snake_case key.
 */
function normaliseAliases(value: unknown, path: (string | number)[], conflicts: { path: (string | number)[]; message: string }[]): unknown {
  if (Array.isArray(value)) return value.map((item, index) => normaliseAliases(item, [...path, index], conflicts));
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    const canonical = VERIFY_KEY_ALIASES[key];
    if (canonical !== undefined && Object.hasOwn(value, canonical)) {
      conflicts.push({ path: [...path, key], message: `both "${canonical}" and its alias "${key}" are set; keep one` });
      continue;
    }
    const name = canonical ?? key;
    out[name] = OPAQUE_KEYS.has(name) ? child : normaliseAliases(child, [...path, name], conflicts);
  }
  return out;
}

/** A timeout in seconds. A duration string (`5m`) is also accepted and converted, since people write both. */
const TIMEOUT_HINT = 'expected a positive number of seconds (or a duration such as 5m)';
const TimeoutSeconds = z
  .union([z.number(), z.string()], { error: (issue) => (issue.input === undefined ? 'required' : `${TIMEOUT_HINT}, got ${JSON.stringify(issue.input)}`) })
  .superRefine((value, ctx) => {
    const parsed = tryParseDuration(value);
    if (!parsed.ok || parsed.ms <= 0) ctx.addIssue({ code: 'custom', message: `${TIMEOUT_HINT}, got ${JSON.stringify(value)}` });
  })
  .transform((value) => {
    const parsed = tryParseDuration(value);
    return parsed.ok ? Math.ceil(parsed.ms / 1000) : 0;
  });

const NonEmpty = z.string().trim().min(1);

/** A path (or glob) inside the repository: relative, without `..` segments. */
const RepoPath = NonEmpty.refine((value) => !value.startsWith('/') && !value.split(/[\\/]/).includes('..'), {
  message: 'must be a path inside the repository (relative, without "..")',
});

/** Tests and setup commands get five minutes unless they say otherwise. */
export const DEFAULT_COMMAND_TIMEOUT_SECONDS = 300;
/** Black-box checks are meant to be quick CLI probes. */
export const DEFAULT_BLACKBOX_TIMEOUT_SECONDS = 60;

const SetupStepSchema = z.strictObject({
  name: NonEmpty,
  command: NonEmpty,
  timeout: TimeoutSeconds.default(DEFAULT_COMMAND_TIMEOUT_SECONDS),
});

const TestGateSchema = z.strictObject({
  name: NonEmpty,
  command: NonEmpty,
  timeout: TimeoutSeconds.default(DEFAULT_COMMAND_TIMEOUT_SECONDS),
  expectedExit: z.number().int().min(0).max(255).default(0),
});

type Re2Constructor = typeof RE2;
let re2: Re2Constructor | undefined;

/**
 * Compiles a verify.yaml pattern with RE2 (https://github.com/google/re2/wiki/Syntax), whose matching
 * time is linear in the input: the repository's patterns run against output the agent controls, and a
 * backtracking pattern such as `^(a+)+$` held the event loop for minutes on 61 characters. RE2 has no
 * backreferences and no lookaround. The native module is loaded on first use, not at CLI start-up.
 *
 * @throws Error (RE2's syntax error) when RE2 cannot compile `source`.
 */
export function compileMatchPattern(source: string): RE2 {
  re2 ??= createRequire(import.meta.url)('re2') as Re2Constructor;
  return new re2(source, 'u');
}

/** A regular expression given as a string; compiled here so a bad pattern fails at load, not mid-run. */
const RegexSource = z.string().superRefine((source, ctx) => {
  try {
    compileMatchPattern(source);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    ctx.addIssue({
      code: 'custom',
      message: `invalid regular expression ${JSON.stringify(source)}: ${reason} (patterns use RE2 syntax, which runs in linear time: no backreferences, no lookaround)`,
    });
  }
});

export type BlackboxAssertion = { exitCode: number } | { contains: string } | { matches: string } | { jsonEquals: unknown };

const ASSERTION_KINDS = ['exitCode', 'contains', 'matches', 'jsonEquals'] as const;

/** Exactly one of the keys per assertion, so `{ contains: a, exitCode: 0 }` is not silently half-checked. */
const AssertionSchema = z
  .strictObject({
    exitCode: z.number().int().min(0).max(255).optional(),
    contains: z.string().optional(),
    matches: RegexSource.optional(),
    jsonEquals: z.unknown().optional(),
  })
  .superRefine((assertion, ctx) => {
    const present = ASSERTION_KINDS.filter((kind) => assertion[kind] !== undefined);
    if (present.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: present.length === 0 ? `expected one of ${ASSERTION_KINDS.join(', ')}` : `set only one of ${present.join(', ')} per assertion`,
      });
    }
  })
  .transform((assertion): BlackboxAssertion => {
    if (assertion.exitCode !== undefined) return { exitCode: assertion.exitCode };
    if (assertion.contains !== undefined) return { contains: assertion.contains };
    if (assertion.matches !== undefined) return { matches: assertion.matches };
    return { jsonEquals: assertion.jsonEquals };
  });

const BlackboxGateSchema = z
  .strictObject({
    name: NonEmpty,
    command: NonEmpty,
    stdin: z.string().optional(),
    stdinFile: RepoPath.optional(),
    timeout: TimeoutSeconds.default(DEFAULT_BLACKBOX_TIMEOUT_SECONDS),
    assertions: z.array(AssertionSchema).min(1),
  })
  .superRefine((gate, ctx) => {
    if (gate.stdin !== undefined && gate.stdinFile !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['stdinFile'], message: 'set either stdin or stdinFile, not both' });
    }
  });

const VerifyConfigObjectSchema = z.strictObject({
  version: z
    .union([z.literal('1'), z.literal(1)], { error: (issue) => `unsupported version ${JSON.stringify(issue.input)} (expected "1")` })
    .transform((): '1' => '1')
    .default('1'),
  environment: z
    .strictObject({
      setup: z.array(SetupStepSchema).default([]),
    })
    .prefault({}),
  contracts: z
    .strictObject({
      requiredFiles: z.array(RepoPath).default([]),
      forbiddenPatterns: z.array(NonEmpty).default([]),
      protectedPaths: z.array(RepoPath).default([]),
    })
    .prefault({}),
  tests: z.array(TestGateSchema).default([]),
  blackbox: z.array(BlackboxGateSchema).default([]),
  policy: z
    .strictObject({
      maxRuntimeSeconds: z.number().int().positive().optional(),
    })
    .prefault({}),
});

/**
 * The verify.yaml schema with snake_case aliases normalised first. Also used for the inline `spec.verify`
 * of a TaskSpec, so both places accept exactly the same document.
 */
export const VerifyConfigSchema = z.preprocess((value, ctx) => {
  const conflicts: { path: (string | number)[]; message: string }[] = [];
  const normalised = normaliseAliases(value, [], conflicts);
  for (const conflict of conflicts) ctx.addIssue({ code: 'custom', path: conflict.path, message: conflict.message, input: value });
  return normalised;
}, VerifyConfigObjectSchema);

/** A validated verify.yaml with every default applied (timeouts in seconds). */
export type VerifyConfig = z.output<typeof VerifyConfigSchema>;
export type SetupStep = z.output<typeof SetupStepSchema>;
export type TestGate = z.output<typeof TestGateSchema>;
export type BlackboxGate = z.output<typeof BlackboxGateSchema>;

/** Where the gates look for the file, in order (SPEC section 6). */
export const VERIFY_CONFIG_FILE_NAMES = ['verify.yaml', '.agentgate/verify.yaml'] as const;

/**
 * Parses verify.yaml text. Every failure, syntax included, is `AG_ERR_VERIFY_CONFIG_INVALID` naming
 * `<file>:<line>` and the reason, because for the run it is one thing: the gates are misconfigured.
 */
export function parseVerifyConfigYaml(text: string, fileName: string): VerifyConfig {
  return parseYamlWithSchema(text, VerifyConfigSchema, {
    fileName,
    code: 'AG_ERR_VERIFY_CONFIG_INVALID',
    syntaxCode: 'AG_ERR_VERIFY_CONFIG_INVALID',
  });
}

/** Validates a verify config given as an object (for example generated by command detection). */
export function parseVerifyConfig(value: unknown): VerifyConfig {
  return parseWithSchema(value, VerifyConfigSchema, { code: 'AG_ERR_VERIFY_CONFIG_INVALID' });
}
