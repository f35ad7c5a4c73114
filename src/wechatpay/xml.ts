import { XMLParser, XMLValidator } from 'fast-xml-parser';

/**
 * The one XML codec of the box. WeChat Pay V2 bodies are a flat `<xml>` element of string fields.
 * - Every value stays a string: `auth_code` (18 digits) and `transaction_id` (28) exceed 2^53, and
 *   fast-xml-parser turns `0123` or `1e5` into numbers unless `parseTagValue` is off.
 * - Values are not trimmed: the signature is over the exact text.
 * - DTDs and entity declarations are refused before parsing (WeChat Pay's XXE advisory).
 * - Unknown fields are kept: the signature covers them.
 */

export class XmlError extends Error {
  readonly code = 'BAD_XML';
  constructor(message: string) {
    // Parser messages may quote the input: keep them short enough for one log line.
    super(message.length > 300 ? `${message.slice(0, 300)}...` : message);
    this.name = 'XmlError';
  }
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Names fast-xml-parser refuses or renames because every JavaScript object has them; no V2 field uses them. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  'toString',
  'valueOf',
  '__defineGetter__',
  '__defineSetter__',
  '__lookupGetter__',
  '__lookupSetter__',
]);

function cdata(value: string): string {
  // A `]]>` inside a value must be split across two CDATA sections.
  return `<![CDATA[${value.replace(/]]>/g, ']]]]><![CDATA[>')}]]>`;
}

/** Encodes fields as `<xml><name><![CDATA[value]]></name>...</xml>`. Empty values are left out. */
export function encodeXml(fields: Readonly<Record<string, string>>): string {
  let out = '<xml>';
  for (const [name, value] of Object.entries(fields)) {
    if (!NAME.test(name) || RESERVED_NAMES.has(name)) throw new XmlError(`field name not allowed in WeChat Pay XML: ${name}`);
    if (typeof value !== 'string') throw new XmlError(`field ${name} is not a string`);
    if (value === '') continue;
    out += /^[A-Za-z0-9_.\-]*$/.test(value) ? `<${name}>${value}</${name}>` : `<${name}>${cdata(value)}</${name}>`;
  }
  return out + '</xml>';
}

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
  // Numeric character references (&#60; &#x3c;) are plain XML and must decode like the named five; with
  // this option fast-xml-parser decodes them, and only these named entities besides.
  htmlEntities: { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" } as unknown as boolean,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

/** Decodes a WeChat Pay V2 body into a flat map of strings. Throws XmlError on anything else. */
export function decodeXml(body: string): Record<string, string> {
  if (typeof body !== 'string' || body.trim() === '') throw new XmlError('empty body');
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) throw new XmlError('DTD or entity declaration refused');
  const valid = XMLValidator.validate(body);
  if (valid !== true) throw new XmlError(`malformed XML: ${valid.err.msg} (line ${valid.err.line})`);
  let doc: unknown;
  try {
    doc = parser.parse(body);
  } catch (error) {
    throw new XmlError(`malformed XML: ${(error as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null) throw new XmlError('not an XML document');
  const roots = Object.keys(doc).filter((k) => k !== '#text');
  if (roots.length !== 1 || roots[0] !== 'xml') throw new XmlError('root element is not <xml>');
  const root = (doc as Record<string, unknown>).xml;
  if (Array.isArray(root)) throw new XmlError('more than one <xml> root');
  const fields: Record<string, string> = {};
  if (root === '' || root === undefined) return fields;
  if (typeof root !== 'object' || root === null) throw new XmlError('<xml> holds text, not fields');
  for (const [name, value] of Object.entries(root as Record<string, unknown>)) {
    if (name === '#text') {
      if (typeof value === 'string' && value.trim() !== '') throw new XmlError('stray text inside <xml>');
      continue;
    }
    if (Array.isArray(value)) throw new XmlError(`field ${name} appears more than once`);
    if (value === '' || value === undefined) {
      fields[name] = '';
    } else if (typeof value === 'string') {
      fields[name] = value;
    } else {
      throw new XmlError(`field ${name} is not a plain value`);
    }
  }
  return fields;
}
