/**
 * The config file of `burrow start --config <file>`: several forwards for one agent process, in
 * YAML (or JSON, which the YAML parser reads too). Validated strictly, with file:line:column in
 * every message: unknown keys, wrong types, duplicate forward names, two forwards that would share
 * a URL. String values may name environment variables as `${NAME}` (`$${` is a literal `${`).
 *
 *   relay: https://tunnel.example.com      # or a list; default BURROW_RELAY, else http://localhost:8080
 *   token: ${BURROW_TOKEN}                 # optional; default BURROW_TOKEN
 *   key: ~/.config/burrow/key.json         # optional; relative paths are from the file's folder
 *   forwards:
 *     - name: web
 *       http: 3000
 *       subdomain: shop
 *     - name: api
 *       http: localhost:8000
 *       session: api
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import {
  type AccessRules,
  type AccessRulesInput,
  accessRulesFrom,
  type KeyPair,
  normalizeSubdomain,
  validateSessionName,
  validateTenantToken,
} from '@burrow/protocol';
import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLMap } from 'yaml';
import { defaultKeyPath } from './keyStore';
import { type LocalTarget, parseTarget } from './localTarget';
import type { ForwardWorker } from './supervisor';

export class ConfigError extends Error {
  readonly code = 'BURROW_ERR_CONFIG';
}

/** What every forward has, whatever it forwards. */
export interface ForwardBase {
  /** Unique within the file; shown in every output line. */
  readonly name: string;
  readonly relay: readonly string[];
  /** Absolute path of the key file (created on first use). */
  readonly keyFile: string;
  readonly token?: string;
  readonly deadAfterMs: number;
  readonly subdomain?: string;
  readonly session?: string;
}

export interface HttpForward extends ForwardBase {
  readonly kind: 'http';
  readonly target: LocalTarget;
  readonly hostHeader: string;
  readonly insecureLocalTls: boolean;
  readonly access?: AccessRules;
}

/**
 * Forward kinds besides http; refused ("not supported yet") until registerForwardKind adds one
 * (forwardKinds.ts adds all three: tcp, share and connect).
 */
export type ExtensionKind = 'tcp' | 'share' | 'connect';

export interface ExtensionForward extends ForwardBase {
  readonly kind: ExtensionKind;
  /** Whatever the kind's hook returned from parse(). */
  readonly options: unknown;
}

export type ForwardConfig = HttpForward | ExtensionForward;

export interface AgentConfig {
  /** The file it came from (as given), for messages. */
  readonly file: string;
  readonly forwards: readonly ForwardConfig[];
}

/**
 * Hook for another forward kind (the TCP forwards): which fields it takes, how to check them and
 * how to run it. Fields common to all forwards (name, relay, token, key, deadAfterMs, subdomain,
 * session) are checked here first.
 */
export interface ForwardKindHook {
  /** Fields besides the common ones that a forward of this kind may have. */
  readonly fields: readonly string[];
  /**
   * Checks the kind's value (`tcp: <value>`) and its fields (plain values, `${VAR}` expanded).
   * Throw an Error with a message to refuse; return what the worker needs.
   */
  parse(value: unknown, fields: Readonly<Record<string, unknown>>): unknown;
  /** One worker (an Agent-like object) for a forward of this kind. */
  createWorker(forward: ExtensionForward, keyPair: KeyPair): ForwardWorker;
}

const EXTENSION_KINDS: readonly ExtensionKind[] = ['tcp', 'share', 'connect'];
/** Kinds that claim no URL of their key: they never clash with another forward's label. */
const UNLABELLED: ReadonlySet<string> = new Set(['share', 'connect']);
const hooks = new Map<ExtensionKind, ForwardKindHook>();

/** Enables (or, with undefined, disables again) a reserved forward kind. */
export function registerForwardKind(kind: ExtensionKind, hook: ForwardKindHook | undefined): void {
  if (hook === undefined) hooks.delete(kind);
  else hooks.set(kind, hook);
}

export function forwardKindHook(kind: ExtensionKind): ForwardKindHook | undefined {
  return hooks.get(kind);
}

type Env = Readonly<Record<string, string | undefined>>;

const TOP_KEYS = ['relay', 'token', 'key', 'deadAfterMs', 'forwards'];
const COMMON_FORWARD_KEYS = ['name', 'relay', 'token', 'key', 'deadAfterMs', 'subdomain', 'session'];
const HTTP_KEYS = ['hostHeader', 'insecure', 'basicAuth', 'allowCidrs', 'bearerTokens', 'requireHeaders'];
const KINDS: readonly string[] = ['http', ...EXTENSION_KINDS];
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Reads and validates a config file. Throws ConfigError. */
export function loadConfigFile(file: string, env: Env = process.env): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  return parseConfig(text, file, env);
}

/** Validates config text; `file` names it in messages and anchors relative key paths. Throws ConfigError. */
export function parseConfig(text: string, file: string, env: Env = process.env): AgentConfig {
  return new Reader(text, file, env).read();
}

class Reader {
  private readonly lines = new LineCounter();
  private readonly doc: Document.Parsed;

  constructor(
    text: string,
    private readonly file: string,
    private readonly env: Env,
  ) {
    this.doc = parseDocument(text, { lineCounter: this.lines, uniqueKeys: true, prettyErrors: true });
    const problem = this.doc.errors[0] ?? this.doc.warnings[0];
    if (problem !== undefined) {
      const pos = problem.linePos?.[0];
      const message = (problem.message.split('\n')[0] as string).replace(/ at line \d+, column \d+:?$/, '');
      throw new ConfigError(`${file}${pos !== undefined ? `:${pos.line}:${pos.col}` : ''}: ${message}`);
    }
  }

  read(): AgentConfig {
    const root = this.doc.contents;
    if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) throw new ConfigError(`${this.file}: the file is empty`);
    const top = this.map(root, 'the file');
    const fields = this.fields(top, TOP_KEYS, 'the top level');
    const relay = fields.has('relay') ? this.relays(fields.get('relay') as Node, 'relay') : this.defaultRelays();
    const token = fields.has('token') ? this.token(fields.get('token') as Node) : this.envToken();
    const keyFile = fields.has('key') ? this.keyPath(fields.get('key') as Node) : defaultKeyPath(this.env);
    const deadAfterMs = fields.has('deadAfterMs') ? this.deadAfter(fields.get('deadAfterMs') as Node) : this.envDeadAfter();
    const list = fields.get('forwards');
    if (list === undefined) throw new ConfigError(`${this.at(top)}: no "forwards": list at least one, e.g. forwards: [{ name: web, http: 3000 }]`);
    if (!isSeq(list)) throw new ConfigError(`${this.at(list)}: "forwards" must be a list`);
    if (list.items.length === 0) throw new ConfigError(`${this.at(list)}: "forwards" is empty: list at least one forward`);
    const defaults = { relay, keyFile, deadAfterMs, ...(token !== undefined ? { token } : {}) };
    const forwards: ForwardConfig[] = [];
    const nodes: Node[] = [];
    for (const item of list.items) {
      const node = this.resolve(item as Node);
      forwards.push(this.forward(node, defaults));
      nodes.push(node);
    }
    this.checkDistinct(forwards, nodes);
    return { file: this.file, forwards };
  }

  private forward(node: Node, defaults: Pick<ForwardBase, 'relay' | 'keyFile' | 'deadAfterMs' | 'token'>): ForwardConfig {
    const map = this.map(node, 'a forward');
    const rawName = map.items.find((p) => isScalar(p.key) && p.key.value === 'name')?.value as Node | null | undefined;
    const nameNode = rawName === undefined || rawName === null ? undefined : this.resolve(rawName);
    if (nameNode === undefined) throw new ConfigError(`${this.at(map)}: this forward has no "name"`);
    const name = this.string(nameNode, 'name');
    if (!NAME_PATTERN.test(name)) throw new ConfigError(`${this.at(nameNode)}: forward name "${name}" must be 1-63 letters, digits, '.', '_' or '-'`);
    const what = `forward "${name}"`;
    const kinds = map.items.map((p) => (isScalar(p.key) ? String(p.key.value) : '')).filter((k) => KINDS.includes(k));
    if (kinds.length === 0) throw new ConfigError(`${this.at(map)}: ${what} says nothing to forward: add "http: <port | host:port | url>"`);
    if (kinds.length > 1) throw new ConfigError(`${this.at(map)}: ${what} has both "${kinds[0]}" and "${kinds[1]}": one kind per forward`);
    const kind = kinds[0] as string;
    const hook = kind === 'http' ? undefined : hooks.get(kind as ExtensionKind);
    if (kind !== 'http' && hook === undefined) throw new ConfigError(`${this.at(map)}: ${what}: ${kind} forwards are not supported yet`);
    const fields = this.fields(map, [...COMMON_FORWARD_KEYS, kind, ...(hook === undefined ? HTTP_KEYS : hook.fields)], what);
    const opt = <T>(key: string, read: (n: Node) => T): T | undefined => {
      const n = fields.get(key);
      return n === undefined ? undefined : read(n);
    };
    const subdomain = opt('subdomain', (n) => this.checked(n, 'subdomain', (s) => normalizeSubdomain(s)));
    const session = opt('session', (n) =>
      this.checked(n, 'session', (s) => {
        validateSessionName(s);
        return s;
      }),
    );
    const token = opt('token', (n) => this.token(n)) ?? defaults.token;
    const base: ForwardBase = {
      name,
      relay: opt('relay', (n) => this.relays(n, 'relay')) ?? defaults.relay,
      keyFile: opt('key', (n) => this.keyPath(n)) ?? defaults.keyFile,
      deadAfterMs: opt('deadAfterMs', (n) => this.deadAfter(n)) ?? defaults.deadAfterMs,
      ...(token !== undefined ? { token } : {}),
      ...(subdomain !== undefined ? { subdomain } : {}),
      ...(session !== undefined ? { session } : {}),
    };
    const kindNode = fields.get(kind) as Node;
    if (UNLABELLED.has(kind) && (subdomain !== undefined || session !== undefined)) {
      throw new ConfigError(`${this.at(map)}: ${what}: a ${kind} forward has no URL: "subdomain" and "session" do not apply`);
    }
    if (hook !== undefined) {
      const extra: Record<string, unknown> = {};
      for (const key of hook.fields) {
        const n = fields.get(key);
        if (n !== undefined) extra[key] = this.plain(n);
      }
      let options: unknown;
      try {
        options = hook.parse(this.plain(kindNode), extra);
      } catch (err) {
        throw new ConfigError(`${this.at(kindNode)}: ${what}: ${(err as Error).message}`);
      }
      return { ...base, kind: kind as ExtensionKind, options };
    }
    const spec = isScalar(kindNode) && typeof kindNode.value === 'number' ? String(kindNode.value) : this.string(kindNode, 'http');
    let target: LocalTarget;
    try {
      if (/^\d+$/.test(spec) && (Number(spec) < 1 || Number(spec) > 65535)) throw new Error(`port ${spec} must be 1-65535`);
      target = parseTarget(spec);
    } catch (err) {
      throw new ConfigError(`${this.at(kindNode)}: ${what}: http: ${(err as Error).message}`);
    }
    const access = this.access(fields, what);
    return {
      ...base,
      kind: 'http',
      target,
      hostHeader: opt('hostHeader', (n) => this.string(n, 'hostHeader')) ?? 'preserve',
      insecureLocalTls: opt('insecure', (n) => this.bool(n, 'insecure')) ?? false,
      ...(access !== undefined ? { access } : {}),
    };
  }

  /** Two forwards must not share a URL: one label per (key, session), one forward per subdomain. */
  private checkDistinct(forwards: readonly ForwardConfig[], nodes: readonly Node[]): void {
    const names = new Map<string, number>();
    const labels = new Map<string, number>();
    const subdomains = new Map<string, number>();
    forwards.forEach((f, i) => {
      const at = this.at(nodes[i] as Node);
      const sameName = names.get(f.name);
      if (sameName !== undefined) throw new ConfigError(`${at}: forward name "${f.name}" is used twice (also at ${this.at(nodes[sameName] as Node)})`);
      names.set(f.name, i);
      if (UNLABELLED.has(f.kind)) return;
      const labelKey = `${f.keyFile}\0${f.session ?? ''}`;
      const sameLabel = labels.get(labelKey);
      if (sameLabel !== undefined) {
        const other = (forwards[sameLabel] as ForwardConfig).name;
        const how = f.session !== undefined ? `the same session "${f.session}"` : 'no session';
        throw new ConfigError(
          `${at}: forwards "${other}" and "${f.name}" would share one URL: both use key ${f.keyFile} with ${how}. ` +
            'A key has one URL per session name, so give each forward of a key its own "session" (one of them may have none).',
        );
      }
      labels.set(labelKey, i);
      if (f.subdomain !== undefined) {
        const sameSub = subdomains.get(f.subdomain);
        if (sameSub !== undefined) {
          throw new ConfigError(
            `${at}: subdomain "${f.subdomain}" is asked for by forwards "${(forwards[sameSub] as ForwardConfig).name}" and "${f.name}"; it can point at one only`,
          );
        }
        subdomains.set(f.subdomain, i);
      }
    });
  }

  private access(fields: ReadonlyMap<string, Node>, what: string): AccessRules | undefined {
    const spec: [string, keyof AccessRulesInput][] = [
      ['basicAuth', 'basicAuth'],
      ['allowCidrs', 'allowCidrs'],
      ['requireHeaders', 'headers'],
      ['bearerTokens', 'bearerTokens'],
    ];
    const input: { -readonly [K in keyof AccessRulesInput]: string[] } = {};
    for (const [key, field] of spec) {
      const node = fields.get(key);
      if (node === undefined) continue;
      let values = this.strings(node, key);
      if (key === 'allowCidrs') {
        values = values
          .flatMap((v) => v.split(','))
          .map((v) => v.trim())
          .filter((v) => v !== '');
        if (values.length === 0) throw new ConfigError(`${this.at(node)}: ${what}: allowCidrs: give at least one address or CIDR`);
      }
      try {
        accessRulesFrom({ [field]: values });
      } catch (err) {
        throw new ConfigError(`${this.at(node)}: ${what}: ${key}: ${(err as Error).message.replace(/^access rules: /, '')}`);
      }
      input[field] = values;
    }
    if (Object.keys(input).length === 0) return undefined;
    try {
      return accessRulesFrom(input);
    } catch (err) {
      const node = fields.get('requireHeaders') ?? fields.get('bearerTokens');
      throw new ConfigError(
        `${this.at(node ?? (fields.values().next().value as Node))}: ${what}: requireHeaders/bearerTokens: ${(err as Error).message.replace(/^access rules: /, '')}`,
      );
    }
  }

  /** The keys of a map as nodes, refusing unknown and non-string keys. */
  private fields(map: YAMLMap, allowed: readonly string[], where: string): Map<string, Node> {
    const out = new Map<string, Node>();
    for (const pair of map.items) {
      const keyNode = pair.key as Node | null;
      if (!isScalar(keyNode) || typeof keyNode.value !== 'string') throw new ConfigError(`${this.at(keyNode ?? map)}: keys must be plain names`);
      const key = keyNode.value;
      if (!allowed.includes(key)) {
        const close = allowed.find((a) => a.toLowerCase() === key.toLowerCase().replace(/[-_]/g, ''));
        throw new ConfigError(
          `${this.at(keyNode)}: unknown key "${key}" in ${where}${close !== undefined ? `; did you mean "${close}"?` : `; known keys: ${allowed.join(', ')}`}`,
        );
      }
      const value = pair.value as Node | null;
      if (value === null || (isScalar(value) && value.value === null)) throw new ConfigError(`${this.at(keyNode)}: "${key}" has no value`);
      out.set(key, this.resolve(value));
    }
    return out;
  }

  private resolve(node: Node): Node {
    return isAlias(node) ? (node.resolve(this.doc) as Node) : node;
  }

  private map(node: Node, what: string): YAMLMap {
    if (!isMap(node)) throw new ConfigError(`${this.at(node)}: ${what} must be a map of key: value`);
    return node;
  }

  private string(node: Node, key: string): string {
    if (!isScalar(node) || typeof node.value !== 'string') throw new ConfigError(`${this.at(node)}: "${key}" must be a string`);
    return this.expand(node.value, node);
  }

  private strings(node: Node, key: string): string[] {
    if (isSeq(node)) {
      if (node.items.length === 0) throw new ConfigError(`${this.at(node)}: "${key}" is an empty list`);
      return node.items.map((n) => this.string(this.resolve(n as Node), key));
    }
    return [this.string(node, key)];
  }

  private bool(node: Node, key: string): boolean {
    if (!isScalar(node) || typeof node.value !== 'boolean') throw new ConfigError(`${this.at(node)}: "${key}" must be true or false`);
    return node.value;
  }

  /** A string checked by `check`, whose message becomes the error. */
  private checked<T>(node: Node, key: string, check: (s: string) => T): T {
    const s = this.string(node, key);
    try {
      return check(s);
    } catch (err) {
      throw new ConfigError(`${this.at(node)}: ${key}: ${(err as Error).message}`);
    }
  }

  private relays(node: Node, key: string): string[] {
    const list = this.strings(node, key)
      .flatMap((r) => r.split(','))
      .map((r) => r.trim())
      .filter((r) => r !== '');
    if (list.length === 0) throw new ConfigError(`${this.at(node)}: "${key}": give at least one relay URL`);
    for (const r of list) if (!isRelayUrl(r)) throw new ConfigError(`${this.at(node)}: "${key}": "${r}" is not an http(s) URL`);
    return list;
  }

  private defaultRelays(): string[] {
    const raw = this.env.BURROW_RELAY;
    const list = (raw === undefined || raw.trim() === '' ? 'http://localhost:8080' : raw)
      .split(',')
      .map((r) => r.trim())
      .filter((r) => r !== '');
    const bad = list.find((r) => !isRelayUrl(r));
    if (list.length === 0 || bad !== undefined) throw new ConfigError(`${this.file}: no "relay" in the file and BURROW_RELAY is not an http(s) URL list`);
    return list;
  }

  private token(node: Node): string {
    return this.checked(node, 'token', (t) => {
      validateTenantToken(t);
      return t;
    });
  }

  private envToken(): string | undefined {
    const t = this.env.BURROW_TOKEN;
    if (t === undefined || t === '') return undefined;
    try {
      validateTenantToken(t);
    } catch (err) {
      throw new ConfigError(`BURROW_TOKEN: ${(err as Error).message}`);
    }
    return t;
  }

  private keyPath(node: Node): string {
    const p = this.string(node, 'key');
    if (p === '~' || p.startsWith('~/')) return join(homedir(), p.slice(1));
    return resolve(dirname(resolve(this.file)), p);
  }

  private deadAfter(node: Node): number {
    const raw = isScalar(node) && typeof node.value === 'number' ? String(node.value) : this.string(node, 'deadAfterMs');
    if (!/^\d+$/.test(raw) || Number(raw) < 100) throw new ConfigError(`${this.at(node)}: "deadAfterMs": "${raw}" must be a whole number of at least 100`);
    return Number(raw);
  }

  private envDeadAfter(): number {
    const raw = this.env.BURROW_DEAD_AFTER_MS;
    if (raw === undefined || raw === '') return 20_000;
    if (!/^\d+$/.test(raw) || Number(raw) < 100) throw new ConfigError(`BURROW_DEAD_AFTER_MS: "${raw}" must be a whole number of at least 100`);
    return Number(raw);
  }

  /** A node as plain data with `${VAR}` expanded in its strings (for kind hooks). */
  private plain(node: Node): unknown {
    const n = this.resolve(node);
    if (isSeq(n)) return n.items.map((i) => this.plain(i as Node));
    if (isMap(n)) {
      const out: Record<string, unknown> = {};
      for (const p of n.items) out[String(isScalar(p.key) ? p.key.value : p.key)] = p.value === null ? null : this.plain(p.value as Node);
      return out;
    }
    if (isScalar(n)) return typeof n.value === 'string' ? this.expand(n.value, n) : n.value;
    return undefined;
  }

  /** `${NAME}` becomes the environment variable (unset or empty: an error); `$${` stays a literal `${`. */
  private expand(value: string, node: Node): string {
    return value.replace(/\$(\$?)\{([^}]*)\}/g, (whole, escaped: string, name: string) => {
      if (escaped !== '') return whole.slice(1);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ConfigError(`${this.at(node)}: "\${${name}}" is not an environment variable name`);
      const v = this.env[name];
      if (v === undefined || v === '') throw new ConfigError(`${this.at(node)}: environment variable ${name} is not set`);
      return v;
    });
  }

  /** file:line:column of a node. */
  private at(node: Node | null | undefined): string {
    const offset = node?.range?.[0];
    if (offset === undefined) return this.file;
    const { line, col } = this.lines.linePos(offset);
    return `${this.file}:${line}:${col}`;
  }
}

function isRelayUrl(r: string): boolean {
  try {
    return ['http:', 'https:', 'ws:', 'wss:'].includes(new URL(r).protocol);
  } catch {
    return false;
  }
}
