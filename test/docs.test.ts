/**
 * Keeps docs/ in step with the code: every error code has its section in ERRORS.md with the right
 * numbers, every frame type its row in PROTOCOL.md, every protocol limit its row, and every relay
 * option its row in OPERATIONS.md. Reads files only; starts nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_BATCH_BYTES } from '@burrow/mux';
import * as protocol from '@burrow/protocol';
import { ERRORS, FrameType, StreamKind } from '@burrow/protocol';
import { MAX_AGENT_MESSAGE_BYTES, RELAY_OPTIONS } from '@burrow/relay';

const doc = (name: string): string => readFileSync(join(__dirname, '..', 'docs', name), 'utf8');
const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const hex = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;
/** Table rows (lines starting with `|`) of a markdown text, with padding collapsed to single spaces. */
const rows = (text: string): string[] =>
  text
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) => line.replace(/\s+/g, ' '));
/** A table cell holding exactly `value`, with or without backticks. */
const cell = (value: string): RegExp => new RegExp(`\\|\\s*\`?${escapeRegExp(value)}\`?\\s*\\|`);
/** The row whose first cell is `value` in backticks. */
const rowFor = (tableRows: string[], value: string): string | undefined => tableRows.find((line) => line.startsWith(`| \`${value}\` |`));

describe('docs/ERRORS.md', () => {
  const text = doc('ERRORS.md');
  const sections = new Map<string, string>();
  for (const part of text.split(/^## /m).slice(1)) {
    const newline = part.indexOf('\n');
    sections.set(part.slice(0, newline).trim(), part.slice(newline));
  }

  test.each(Object.keys(ERRORS))('has a "## %s" section', (code) => {
    expect(sections.has(code)).toBe(true);
  });

  test.each(Object.entries(ERRORS))('%s lists its wire number, HTTP status and close code', (code, spec) => {
    expect(rows(sections.get(code) ?? '')).toContain(`| ${spec.wire} | ${spec.status} | ${spec.close} |`);
  });

  test('documents no code that does not exist', () => {
    const documented = [...sections.keys()].filter((h) => h.startsWith('BURROW_ERR_'));
    expect(documented.filter((code) => !Object.hasOwn(ERRORS, code))).toEqual([]);
  });

  test.each(['BURROW_ERR_CONFIG', 'BURROW_ERR_USAGE', 'BURROW_ERR_KEY_FILE', 'BURROW_ERR_BAD_TARGET'])('documents the command-line code %s', (code) => {
    expect(text).toContain(`### ${code}`);
  });
});

describe('docs/PROTOCOL.md', () => {
  const text = doc('PROTOCOL.md');
  const tableRows = rows(text);

  test.each(Object.entries(FrameType))('has a row pairing %s with its number', (name, value) => {
    const row = new RegExp(`^\\|\\s*\`?${hex(value)}\`?\\s*\\|\\s*\`?${name}\`?\\s*\\|`);
    expect(tableRows.some((line) => row.test(line))).toBe(true);
  });

  test.each(Object.entries(StreamKind))('has a row pairing stream kind %s with its number', (name, value) => {
    expect(tableRows.some((line) => cell(name).test(line) && cell(String(value)).test(line))).toBe(true);
  });

  const limits: [string, number][] = [
    ...Object.entries(protocol).filter((e): e is [string, number] => /^[A-Z][A-Z0-9_]+$/.test(e[0]) && typeof e[1] === 'number'),
    ['MAX_BATCH_BYTES', MAX_BATCH_BYTES],
    ['MAX_AGENT_MESSAGE_BYTES', MAX_AGENT_MESSAGE_BYTES],
  ];
  test.each(limits)('the limits table has %s with its value', (name, value) => {
    const row = rowFor(tableRows, name);
    expect(row).toBeDefined();
    const shown = new RegExp(`(^|[^0-9a-fx])(${value}|${escapeRegExp(hex(value))})([^0-9a-f]|$)`);
    expect(row).toMatch(shown);
  });
});

describe('docs/OPERATIONS.md', () => {
  const text = doc('OPERATIONS.md');
  const tableRows = rows(text);

  test.each(RELAY_OPTIONS.map((o) => [o.flag, o.env, o.defaultText] as const))('has a row for %s with %s and default %s', (flag, env, defaultText) => {
    const row = rowFor(tableRows, flag);
    expect(row).toBeDefined();
    expect(row).toContain(`\`${env}\``);
    expect(row).toContain(`\`${defaultText}\``);
  });
});
