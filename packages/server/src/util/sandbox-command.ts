/**
 * The bwrap invocation of one sandboxed process (docs/security.md): see `sandbox.ts` for what the sandbox
 * sees and why; https://github.com/containers/bubblewrap/blob/main/bwrap.xml documents every flag.
 */
import path from 'node:path';

/** One sandboxed process: the bwrap binary and what is visible and writable inside. */
export interface SandboxSpec {
  bwrapPath: string;
  network: boolean;
  /** Bound read-write at the same path (created by {@link prepareRunSandbox}). */
  writable: readonly string[];
  /** Bound read-only again below a hidden directory (applied after {@link hidden}). */
  readable: readonly string[];
  /** Replaced by an empty tmpfs. */
  hidden: readonly string[];
  /** Host sockets (files) covered with /dev/null, e.g. `SSH_AUTH_SOCK`. */
  masked: readonly string[];
  /** HOME inside; XDG directories live below it. */
  home: string;
  /** TMPDIR inside. */
  tmp: string;
}

export interface SandboxedCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * The bwrap invocation running `argv` with `env` in `cwd` inside `spec`.
 *
 * The environment is handed to bwrap itself, which passes it on; it is never put on bwrap's command line
 * (`--setenv`), where other users of the host could read model keys through `ps`. bwrap's own environment
 * is therefore exactly the one computed for the agent or gate: AgentGate's secrets were removed before.
 * No `--new-session`: the processes stay in the group runProcess signals (a SIGTERM reaches the agent,
 * not only bwrap); they have no controlling terminal anyway (runProcess starts a new session with pipes)
 * and the minimal /dev has no host terminal, so TIOCSTI injection has nothing to reach.
 */
export function sandboxCommand(spec: SandboxSpec, argv: readonly string[], env: Record<string, string>, cwd: string): SandboxedCommand {
  const args = ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/dev/shm'];
  for (const dir of spec.hidden) args.push('--tmpfs', dir);
  for (const socket of spec.masked) args.push('--ro-bind', '/dev/null', socket);
  for (const dir of spec.readable) args.push('--ro-bind', dir, dir);
  for (const dir of spec.writable) args.push('--bind', dir, dir);
  // The hiding tmpfs itself stays read-only; the binds below it are mounts of their own and keep their mode.
  for (const dir of spec.hidden) args.push('--remount-ro', dir);
  args.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try');
  if (!spec.network) args.push('--unshare-net');
  args.push('--die-with-parent', '--cap-drop', 'ALL', '--chdir', cwd, '--', ...argv);
  const inside: Record<string, string> = {
    ...env,
    HOME: spec.home,
    TMPDIR: spec.tmp,
    TMP: spec.tmp,
    TEMP: spec.tmp,
    XDG_CONFIG_HOME: path.join(spec.home, '.config'),
    XDG_CACHE_HOME: path.join(spec.home, '.cache'),
    XDG_DATA_HOME: path.join(spec.home, '.local', 'share'),
    XDG_STATE_HOME: path.join(spec.home, '.local', 'state'),
  };
  // Host session resources that are hidden or masked inside.
  for (const name of ['XDG_RUNTIME_DIR', 'DBUS_SESSION_BUS_ADDRESS', 'SSH_AUTH_SOCK']) delete inside[name];
  return { file: spec.bwrapPath, args, env: inside };
}
