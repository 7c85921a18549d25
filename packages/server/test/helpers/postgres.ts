/**
 * A real PostgreSQL server for tests: `initdb` into a temporary directory, `pg_ctl start` on a free
 * 127.0.0.1 port, one server per test file (about 1 s to start) and a fresh database per test
 * (`createDatabase()`, tens of milliseconds).
 *
 * The binaries are found with `pg_config --bindir`, else in `/usr/lib/postgresql/<version>/bin` (Debian's
 * `postgresql` package; CI installs it in `.ci/run`). `initdb` refuses to run as root, so as root the
 * cluster belongs to the `postgres` user and every server command runs through `runuser -u postgres`.
 * The server runs without fsync (test data only). `stop()` belongs in `afterAll`; should the test process
 * exit without it, an exit hook still stops the server by its PID.
 */
import { execFile as execFileCallback, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const execFile = promisify(execFileCallback);
const isRoot = process.getuid?.() === 0;

function hasServerBinaries(dir: string): boolean {
  return existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')) && existsSync(join(dir, 'postgres'));
}

function findBinDir(): string | undefined {
  let fromPgConfig: string | undefined;
  try {
    fromPgConfig = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    fromPgConfig = undefined; // no pg_config on this machine: look where Debian installs the server
  }
  if (fromPgConfig !== undefined && hasServerBinaries(fromPgConfig)) return fromPgConfig;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a));
  return versions.map((version) => join(root, version, 'bin')).find(hasServerBinaries);
}

function postgresUserExists(): boolean {
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
    return true;
  } catch {
    return false; // no postgres user: as root the server cannot be started
  }
}

/** Where `initdb` and `pg_ctl` are, when this machine can run a test server. */
export const postgresBinDir: string | undefined = findBinDir();

/** Whether {@link startPostgres} can work here (binaries found; as root, a `postgres` user exists). */
export const postgresAvailable: boolean = postgresBinDir !== undefined && (!isRoot || postgresUserExists());

export interface TestPostgres {
  /** The server's `postgres` database as superuser `postgres` (trust authentication). */
  readonly url: string;
  readonly port: number;
  /** Creates an empty database and returns its URL. */
  createDatabase(): Promise<string>;
  /** Stops the server (fast shutdown: open connections are terminated), keeping its data. */
  halt(): Promise<void>;
  /** Starts the halted server again on the same port. */
  start(): Promise<void>;
  /** `halt()` then `start()`. */
  restart(): Promise<void>;
  /** Stops the server and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not read the port of a probe socket');
  return address.port;
}

async function userIds(name: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await execFile('id', ['-u', name])).stdout.trim());
  const gid = Number((await execFile('id', ['-g', name])).stdout.trim());
  return { uid, gid };
}

/** Runs a server binary, as `postgres` when this process is root. */
async function runServerCommand(bin: string, args: readonly string[]): Promise<void> {
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, [...args]];
  await execFile(file, argv, { timeout: 60_000 });
}

export async function startPostgres(): Promise<TestPostgres> {
  const binDir = postgresBinDir;
  if (binDir === undefined || !postgresAvailable) throw new Error('PostgreSQL server binaries are not installed (apt-get install postgresql)');
  const bin = (name: string): string => join(binDir, name);
  // Under /tmp with mode 0755: the postgres user must reach it when this process is root.
  const root = await mkdtemp(join(isRoot ? '/tmp' : (process.env['TMPDIR'] ?? '/tmp'), 'agentgate-pg-'));
  await chmod(root, 0o755);
  const data = join(root, 'data');
  const log = join(root, 'postgres.log');
  if (isRoot) {
    const { uid, gid } = await userIds('postgres');
    await chown(root, uid, gid);
  } else {
    await mkdir(data, { mode: 0o700 });
  }
  await runServerCommand(bin('initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-locale', '--no-sync']);

  let port = 0;
  let pid: number | undefined;
  let databases = 0;
  let stopped = false;
  const killOnExit = (): void => {
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGQUIT'); // immediate shutdown of the postmaster and its children
    } catch (err) {
      if (!(err instanceof Error && 'code' in err && err.code === 'ESRCH')) process.stderr.write(`could not stop the test PostgreSQL (pid ${pid}): ${String(err)}\n`);
    }
    try {
      rmSync(root, { recursive: true, force: true });
    } catch (err) {
      process.stderr.write(`could not remove the test PostgreSQL directory ${root}: ${String(err)}\n`);
    }
  };
  process.once('exit', killOnExit);

  const launch = async (): Promise<void> => {
    const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${data} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
    try {
      await runServerCommand(bin('pg_ctl'), ['-D', data, '-o', options, '-l', log, '-w', '-t', '60', 'start']);
    } catch (err) {
      const tail = existsSync(log) ? (await readFile(log, 'utf8')).split('\n').slice(-15).join('\n') : '(no log)';
      throw new Error(`pg_ctl start failed on port ${port}: ${String(err)}\n${tail}`, { cause: err });
    }
    pid = Number((await readFile(join(data, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  };
  // The probed port may be taken again before the server binds it: try another one then.
  for (let attempt = 1; ; attempt += 1) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt === 3) {
        killOnExit();
        process.off('exit', killOnExit);
        throw err;
      }
    }
  }

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const halt = async (): Promise<void> => {
    await runServerCommand(bin('pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']);
    pid = undefined;
  };
  return {
    url,
    port,
    async createDatabase() {
      databases += 1;
      const name = `agentgate_test_${databases}`;
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    halt,
    start: launch,
    async restart() {
      await halt();
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (pid !== undefined) await halt();
      process.off('exit', killOnExit);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
