/**
 * The worktree's Python projects in a run's virtualenv (python-env.ts): their metadata, read by the
 * interpreter itself (tomllib) rather than by a TOML parser of our own, where their packages are
 * (`importRoot`: `src/` for the src layout), and linking them — a `.pth` file naming the worktree, plus
 * the metadata and console scripts an editable install would have written.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { AgentGateError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { gateEnv } from '../util/secrets.js';
import type { Env } from '../util/secrets.js';
import { canonicalName } from './python-commands.js';
import { runTool, scriptShebang, sitePackagesDirs } from './python-venv.js';
import type { PythonInterpreter } from './python-venv.js';

/** Name of the `.pth` file that puts the worktree's packages on `sys.path`. */
export const WORKTREE_PTH = '_agentgate_worktree.pth';

function isInsideOrSame(candidate: string, root: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}


/** What {@link readProjects} learns about one project directory. */
export interface ProjectInfo {
  dir: string;
  /** Why the metadata could not be read (no TOML parser, a syntax error). */
  error?: string;
  /** `[project]` of pyproject.toml, when present. */
  project?: {
    name: string | null;
    version: string | null;
    dynamic: string[];
    dependencies: string[];
    optional: Record<string, string[]>;
    scripts: Record<string, string>;
    guiScripts: Record<string, string>;
    entryPoints: Record<string, Record<string, string>>;
  };
  /** Package roots the build configuration names (setuptools `where`/`package-dir`, poetry `from` …), relative. */
  roots: string[];
  setupPy: boolean;
  setupCfg: boolean;
}

const PROJECT_INFO_SCRIPT = String.raw`
import configparser, json, os, sys
try:
    import tomllib
except ImportError:
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

def strs(v):
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []

def table(v):
    return v if isinstance(v, dict) else {}

def smap(v):
    return {k: x for k, x in table(v).items() if isinstance(x, str)}

def info(d):
    out = {"dir": d, "roots": [], "setupPy": os.path.isfile(os.path.join(d, "setup.py")), "setupCfg": os.path.isfile(os.path.join(d, "setup.cfg"))}
    p = os.path.join(d, "pyproject.toml")
    if os.path.isfile(p):
        if tomllib is None:
            out["error"] = "pyproject.toml cannot be read: this Python has neither tomllib (3.11+) nor tomli"
        else:
            try:
                with open(p, "rb") as f:
                    data = tomllib.load(f)
            except Exception as e:
                data = {}
                out["error"] = "pyproject.toml: %s" % e
            proj = data.get("project")
            if isinstance(proj, dict):
                out["project"] = {
                    "name": proj["name"] if isinstance(proj.get("name"), str) else None,
                    "version": proj["version"] if isinstance(proj.get("version"), str) else None,
                    "dynamic": strs(proj.get("dynamic")),
                    "dependencies": strs(proj.get("dependencies")),
                    "optional": {k: strs(v) for k, v in table(proj.get("optional-dependencies")).items()},
                    "scripts": smap(proj.get("scripts")),
                    "guiScripts": smap(proj.get("gui-scripts")),
                    "entryPoints": {g: smap(t) for g, t in table(proj.get("entry-points")).items()},
                }
            tool = table(data.get("tool"))
            st = table(tool.get("setuptools"))
            pd = table(st.get("package-dir"))
            if isinstance(pd.get(""), str):
                out["roots"].append(pd[""])
            pk = st.get("packages")
            if isinstance(pk, dict):
                out["roots"] += strs(table(pk.get("find")).get("where"))
            for entry in table(tool.get("poetry")).get("packages") or []:
                if isinstance(entry, dict) and isinstance(entry.get("from"), str):
                    out["roots"].append(entry["from"])
            wheel = table(table(table(table(tool.get("hatch")).get("build")).get("targets")).get("wheel"))
            for entry in strs(wheel.get("packages")):
                entry = entry.strip("/")
                if "/" in entry:
                    out["roots"].append(entry.rsplit("/", 1)[0])
            pdm = table(table(tool.get("pdm")).get("build"))
            if isinstance(pdm.get("package-dir"), str):
                out["roots"].append(pdm["package-dir"])
    if out["setupCfg"]:
        cp = configparser.ConfigParser(interpolation=None)
        try:
            cp.read(os.path.join(d, "setup.cfg"), encoding="utf-8")
            if cp.has_option("options", "package_dir"):
                for line in cp.get("options", "package_dir").splitlines():
                    k, sep, v = line.partition("=")
                    if sep and k.strip() == "" and v.strip():
                        out["roots"].append(v.strip())
            if cp.has_option("options.packages.find", "where"):
                out["roots"] += cp.get("options.packages.find", "where").split()
        except (configparser.Error, UnicodeDecodeError) as e:
            out.setdefault("error", "setup.cfg: %s" % e)
    return out

print(json.dumps([info(d) for d in sys.argv[1:]]))
`;

/**
 * Reads the metadata of project directories with the base interpreter (`-I -S`: nothing of the project
 * is imported or run; tomllib only parses). A directory without pyproject.toml, setup.py or setup.cfg
 * comes back with nothing set.
 */
export async function readProjects(python: PythonInterpreter, dirs: readonly string[], options: { signal: AbortSignal; clock: Clock; env: Env }): Promise<Map<string, ProjectInfo>> {
  const out = new Map<string, ProjectInfo>();
  if (dirs.length === 0) return out;
  const stdout = await runTool(python.executable, ['-I', '-S', '-B', '-c', PROJECT_INFO_SCRIPT, ...dirs], { cwd: dirs[0] ?? '/', env: gateEnv(options.env), signal: options.signal, clock: options.clock, what: 'read the project metadata' });
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch (error) {
    throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', 'Python environment: the project metadata reader printed something else than JSON', { cause: error });
  }
  if (!Array.isArray(value)) throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', 'Python environment: the project metadata reader printed something else than a list');
  for (const item of value as unknown[]) {
    // The script builds exactly this shape; only the directory is checked before it is trusted as a key.
    const info = item as ProjectInfo;
    if (typeof info.dir === 'string') out.set(info.dir, info);
  }
  return out;
}

/** Whether the directory is a Python project at all (something pip could install). */
export function isProject(info: ProjectInfo | undefined): boolean {
  return info !== undefined && (info.project !== undefined || info.setupPy || info.setupCfg);
}

/** Whether a directory holds a Python package (`<name>/__init__.py`) or module (`<name>.py`). */
function hasPythonModules(dir: string): boolean {
  return readdirSync(dir).some((name) => name !== '__pycache__' && (name.endsWith('.py') || existsSync(path.join(dir, name, '__init__.py'))));
}

/**
 * The directory that goes on `sys.path` for a project: what its build configuration names (setuptools
 * `package-dir`/`where`, poetry `from`, hatch packages, pdm, setup.cfg), else `src/` when the project
 * uses the src layout (`src/<pkg>/__init__.py` or `src/<module>.py`), else the project directory.
 */
export function importRoot(projectDir: string, info: ProjectInfo | undefined): string {
  for (const root of info?.roots ?? []) {
    const candidate = path.resolve(projectDir, root);
    if (isInsideOrSame(candidate, projectDir) && existsSync(candidate) && statSync(candidate).isDirectory()) return candidate;
  }
  const src = path.join(projectDir, 'src');
  if (existsSync(src) && statSync(src).isDirectory() && hasPythonModules(src)) return src;
  return projectDir;
}

/** The `*.dist-info` directory of a distribution in site-packages, if any. */
function distInfoOf(names: readonly string[], name: string): string | undefined {
  const wanted = canonicalName(name);
  // `<name>-<version>.dist-info`: the name never contains `-` there (it is written with `_`).
  return names.find((entry) => entry.endsWith('.dist-info') && entry.includes('-') && canonicalName(entry.slice(0, entry.indexOf('-'))) === wanted);
}

const ENTRY_POINT = /^\s*([A-Za-z_][\w.]*)\s*:\s*([A-Za-z_][\w.]*)\s*(\[[^\]]*\])?\s*$/;
const SCRIPT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const VERSION = /^[A-Za-z0-9.+!_-]+$/;

/**
 * Links the worktree's projects into the run's virtualenv: one `.pth` file with their import roots
 * ({@link importRoot}), and — for a project whose metadata is static and that has no `*.dist-info` in
 * the virtualenv yet — a minimal one (name, version, entry points, `direct_url.json` naming the worktree)
 * and its console scripts, as an editable install would. Returns the import roots.
 */
export async function linkProjects(input: { venv: string; worktreePath: string; linked: readonly string[]; python: PythonInterpreter; signal: AbortSignal; clock: Clock; env: Env }): Promise<string[]> {
  const [sitePackages] = await sitePackagesDirs(input.venv);
  if (sitePackages === undefined) throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `Python environment: ${input.venv} has no site-packages directory`);
  const worktree = path.resolve(input.worktreePath);
  const dirs = input.linked.map((dir) => path.resolve(worktree, dir)).filter((dir) => isInsideOrSame(dir, worktree));
  const infos = await readProjects(input.python, dirs, input);
  const roots = dirs.map((dir) => importRoot(dir, infos.get(dir)));
  await writeFile(path.join(sitePackages, WORKTREE_PTH), `${[...new Set(roots)].join('\n')}\n`);
  const names = await readdir(sitePackages);
  for (const dir of dirs) {
    const project = infos.get(dir)?.project;
    if (project?.name === null || project?.name === undefined || project.version === null || !VERSION.test(project.version)) continue;
    if (distInfoOf(names, project.name) !== undefined) continue;
    await writeDistInfo(sitePackages, input.venv, dir, { ...project, name: project.name, version: project.version });
  }
  return roots;
}

async function writeDistInfo(
  sitePackages: string,
  venv: string,
  projectDir: string,
  project: NonNullable<ProjectInfo['project']> & { name: string; version: string },
): Promise<void> {
  const wheelName = project.name.replace(/[-_.]+/g, '_');
  const distInfo = `${wheelName}-${project.version}.dist-info`;
  const dir = path.join(sitePackages, distInfo);
  await mkdir(dir, { recursive: true });
  const groups: Record<string, Record<string, string>> = { console_scripts: project.scripts, gui_scripts: project.guiScripts, ...project.entryPoints };
  const entryPoints = Object.entries(groups)
    .map(([group, entries]) => {
      const lines = Object.entries(entries).filter(([name, value]) => SCRIPT_NAME.test(name) && ENTRY_POINT.test(value));
      return lines.length === 0 ? '' : `[${group}]\n${lines.map(([name, value]) => `${name} = ${value.trim()}`).join('\n')}\n`;
    })
    .filter((text) => text !== '')
    .join('\n');
  const files: Record<string, string> = {
    METADATA: `Metadata-Version: 2.1\nName: ${project.name}\nVersion: ${project.version}\n`,
    INSTALLER: 'agentgate\n',
    'direct_url.json': `${JSON.stringify({ url: pathToFileURL(projectDir).href, dir_info: { editable: true } })}\n`,
    ...(entryPoints === '' ? {} : { 'entry_points.txt': entryPoints }),
  };
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content);
  const record = [...Object.keys(files).map((name) => `${distInfo}/${name},,`), `${distInfo}/RECORD,,`];
  const bin = path.join(venv, 'bin');
  for (const [name, value] of [...Object.entries(project.scripts), ...Object.entries(project.guiScripts)]) {
    const match = ENTRY_POINT.exec(value);
    if (!SCRIPT_NAME.test(name) || match?.[1] === undefined || match[2] === undefined) continue;
    const target = path.join(bin, name);
    if (existsSync(target)) continue;
    const [first = '', ...rest] = match[2].split('.');
    const call = [first, ...rest].join('.');
    await writeFile(
      target,
      `${scriptShebang(path.join(bin, 'python'), '')}\n# ${name} of ${project.name}, written by AgentGate: the project is linked from the worktree, not installed.\nimport sys\nfrom ${match[1]} import ${first}\nif __name__ == "__main__":\n    sys.exit(${call}())\n`,
      { mode: 0o755 },
    );
    record.push(`${path.relative(sitePackages, target)},,`);
  }
  await writeFile(path.join(dir, 'RECORD'), `${record.join('\n')}\n`);
}
