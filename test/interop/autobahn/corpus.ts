/**
 * Stand-ins for the five test data files of Autobahn's sections 12 and 13 (its `testdata/`
 * folder), generated from a fixed seed: same kind of content, same size, same message type. The
 * originals are not in this repository (a PDF, a bitmap, a Gutenberg text and two files of
 * unstated origin); what the cases need from them is data that compresses the way that kind of
 * data does, cut into messages at arbitrary offsets. The two text corpora are ASCII, so any cut
 * is valid UTF-8.
 */
import { createCipheriv, createHash } from 'node:crypto';

export interface Corpus {
  /** Autobahn's name for the data set. */
  name: string;
  /** What the original is, as Autobahn describes it. */
  description: string;
  /** Autobahn sends the messages of this data set as binary (else as text). */
  binary: boolean;
  data(): Buffer;
}

// Read once: under Jest every use of a global (Math…) in a hot loop is a slow lookup.
const { cos, floor, imul, max, min, round, sin } = Math;

/** A small seeded PRNG (mulberry32): the same bytes on every run and every machine. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` random-looking bytes from `seed` (an AES-128-CTR key stream: fast, and the same everywhere). */
function noise(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

/** Appends generated pieces until `size` bytes, then cuts to exactly `size`. */
function fill(size: number, next: () => string | Buffer): Buffer {
  const parts: Buffer[] = [];
  let length = 0;
  while (length < size) {
    const piece = next();
    const bytes = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : piece;
    parts.push(bytes);
    length += bytes.length;
  }
  return Buffer.concat(parts, length).subarray(0, size);
}

const LATIN = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua ' +
  'enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure in ' +
  'reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt culpa'
).split(' ');
const FIRST_NAMES = ['Alice', 'Bruno', 'Carla', 'Dieter', 'Elena', 'Farid', 'Greta', 'Hiro', 'Ines', 'Jonas', 'Kara', 'Luis', 'Mira', 'Nils'];
const LAST_NAMES = ['Keller', 'Moreno', 'Novak', 'Olsen', 'Petrov', 'Quinn', 'Rossi', 'Sato', 'Teller', 'Umarov', 'Vogel', 'Weiss'];

function jsonData(): Buffer {
  const rnd = prng(0x4a534f4e);
  const pick = <T>(list: readonly T[]): T => list[floor(rnd() * list.length)]!;
  const words = (n: number): string => Array.from({ length: n }, () => pick(LATIN)).join(' ');
  const hex = (n: number): string => Array.from({ length: n }, () => floor(rnd() * 16).toString(16)).join('');
  let id = 0;
  let first = true;
  return fill(194056, () => {
    const record = {
      _id: hex(24),
      index: id++,
      guid: `${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`,
      isActive: rnd() < 0.5,
      balance: `$${floor(rnd() * 4000)},${String(floor(rnd() * 1000)).padStart(3, '0')}.${String(floor(rnd() * 100)).padStart(2, '0')}`,
      age: 20 + floor(rnd() * 50),
      eyeColor: pick(['blue', 'brown', 'green']),
      name: `${pick(FIRST_NAMES)} ${pick(LAST_NAMES)}`,
      company: pick(LATIN).toUpperCase(),
      email: `${pick(FIRST_NAMES).toLowerCase()}.${pick(LAST_NAMES).toLowerCase()}@${pick(LATIN)}.com`,
      phone: `+1 (${800 + floor(rnd() * 200)}) ${100 + floor(rnd() * 900)}-${1000 + floor(rnd() * 9000)}`,
      address: `${floor(rnd() * 999)} ${pick(LAST_NAMES)} Street, ${pick(LATIN)}, ${10000 + floor(rnd() * 89999)}`,
      about: `${words(20 + floor(rnd() * 30))}.`,
      registered: `20${10 + floor(rnd() * 14)}-0${1 + floor(rnd() * 9)}-1${floor(rnd() * 9)}T0${floor(rnd() * 9)}:1${floor(rnd() * 9)}:2${floor(rnd() * 9)}`,
      latitude: Number((rnd() * 180 - 90).toFixed(6)),
      longitude: Number((rnd() * 360 - 180).toFixed(6)),
      tags: Array.from({ length: 7 }, () => pick(LATIN)),
      friends: Array.from({ length: 3 }, (_, i) => ({ id: i, name: `${pick(FIRST_NAMES)} ${pick(LAST_NAMES)}` })),
      greeting: `Hello, ${pick(FIRST_NAMES)}! You have ${floor(rnd() * 20)} unread messages.`,
      favoriteFruit: pick(['apple', 'banana', 'strawberry']),
    };
    const text = (first ? '[\n' : ',\n') + JSON.stringify(record, null, 2).replace(/^/gm, '  ');
    first = false;
    return text;
  });
}

function htmlData(): Buffer {
  const rnd = prng(0x48544d4c);
  const pick = <T>(list: readonly T[]): T => list[floor(rnd() * list.length)]!;
  const words = (n: number): string => Array.from({ length: n }, () => pick(LATIN)).join(' ');
  let section = 0;
  let started = false;
  return fill(263527, () => {
    const head = started
      ? ''
      : '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Data 1</title>\n' +
        '<link rel="stylesheet" href="/static/css/site.css">\n<script src="/static/js/app.js" defer></script>\n</head>\n<body>\n';
    started = true;
    section++;
    const items = Array.from({ length: 4 + floor(rnd() * 5) }, () => `      <li><a href="/${pick(LATIN)}/${floor(rnd() * 9999)}.html" class="nav-link">${words(2)}</a></li>\n`).join('');
    const rows = Array.from(
      { length: 3 + floor(rnd() * 6) },
      () => `        <tr><td class="name">${pick(FIRST_NAMES)} ${pick(LAST_NAMES)}</td><td class="num">${floor(rnd() * 100000)}</td><td>${words(3)}</td></tr>\n`,
    ).join('');
    return (
      head +
      `<div class="section" id="section-${section}">\n  <h2>${words(4)}</h2>\n  <nav>\n    <ul class="nav">\n${items}    </ul>\n  </nav>\n` +
      `  <p class="lead">${words(30 + floor(rnd() * 40))}.</p>\n  <p>${words(20 + floor(rnd() * 60))}.</p>\n` +
      `  <table class="data">\n    <tbody>\n${rows}    </tbody>\n  </table>\n</div>\n`
    );
  });
}

function faustData(): Buffer {
  const rnd = prng(0x46415553);
  const pick = <T>(list: readonly T[]): T => list[floor(rnd() * list.length)]!;
  const speakers = ['FAUST.', 'MEPHISTOPHELES.', 'WAGNER.', 'MARGARETE.', 'MARTHE.', 'CHOR DER ENGEL.', 'SCHÜLER.', 'DER HERR.'];
  const vocabulary = (
    'ich du er sie es wir ihr und der die das nicht mit mir mich dich sich ist war hab habe wohl noch nun so wie was wer ' +
    'wenn doch auch nur schon da dort hier ach Herz Geist Welt Gott Himmel Erde Nacht Tag Licht Blut Seele Leben Tod Liebe ' +
    'Natur Kraft Wort Sinn Tat Gefühl Schmerz Glück Traum Brust Hand Blick Augen Mädchen Knabe Teufel Engel Höll Grab ' +
    'möcht müssen können soll will weiß fühl seh hör geh komm bleib sprich lass gib nimm schön süß heiß bös früh spät ' +
    'über für zurück hinüber herbei hinab empor ewig tief hoch weit nah fern öffnet schließt träumt verführt erkennt'
  ).split(' ');
  let started = false;
  return fill(222218, () => {
    const intro = started ? '' : 'The Project Gutenberg EBook of Faust: Der Tragödie erster Teil, by Johann Wolfgang von Goethe\r\n\r\n';
    started = true;
    const lines = Array.from({ length: 2 + floor(rnd() * 10) }, () => {
      const line = Array.from({ length: 4 + floor(rnd() * 6) }, () => pick(vocabulary)).join(' ');
      return `${line.charAt(0).toUpperCase()}${line.slice(1)}${pick([',', '.', '!', '?', ';', ''])}\r\n`;
    });
    return `${intro}\r\n${pick(speakers)}\r\n${lines.join('')}`;
  });
}

/** A 512×512 8-bit greyscale BMP: smooth shapes with some noise, like a scanned photograph. */
function bitmapData(): Buffer {
  const width = 512;
  const height = 512;
  const header = Buffer.alloc(14 + 40 + 256 * 4);
  header.write('BM', 0, 'latin1');
  header.writeUInt32LE(header.length + width * height, 2);
  header.writeUInt32LE(header.length, 10);
  header.writeUInt32LE(40, 14);
  header.writeInt32LE(width, 18);
  header.writeInt32LE(height, 22);
  header.writeUInt16LE(1, 26);
  header.writeUInt16LE(8, 28);
  header.writeUInt32LE(width * height, 34);
  header.writeUInt32LE(2835, 38);
  header.writeUInt32LE(2835, 42);
  header.writeUInt32LE(256, 46);
  for (let i = 0; i < 256; i++) header.writeUInt32LE(i * 0x010101, 54 + i * 4);
  const pixels = Buffer.alloc(width * height);
  const grain = noise('lena512', width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = y * width + x;
      const disc = (x - 260) * (x - 260) + (y - 300) * (y - 300) < 8100 ? 40 : 0;
      const smooth = 120 + 55 * sin(x / 41 + sin(y / 67) * 2) + 35 * cos(y / 23 - x / 89) + disc;
      pixels[at] = max(0, min(255, round(smooth + ((grain[at]! % 15) - 7))));
    }
  }
  return Buffer.concat([header, pixels]); // 263222 bytes, as Autobahn's lena512.bmp
}

/** A PDF: text objects between streams that are, as in most PDFs, already compressed (random-looking). */
function pdfData(): Buffer {
  const rnd = prng(0x50444620);
  let object = 0;
  let started = false;
  return fill(1042328, () => {
    const head = started ? '' : '%PDF-1.4\n%\xe2\xe3\xcf\xd3\n';
    started = true;
    object++;
    const length = 2000 + floor(rnd() * 14000);
    const stream = noise(`ooms:${object}`, length);
    const dictionary =
      `${object} 0 obj\n<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 ${object + 1} 0 R >> >> ` +
      `/MediaBox [0 0 612 792] /Contents ${object + 2} 0 R >>\nendobj\n` +
      `${object + 2} 0 obj\n<< /Length ${length} /Filter /FlateDecode >>\nstream\n`;
    object += 2;
    return Buffer.concat([Buffer.from(head + dictionary, 'latin1'), stream, Buffer.from('\nendstream\nendobj\n', 'latin1')]);
  });
}

const lazily = (make: () => Buffer): (() => Buffer) => {
  let made: Buffer | undefined;
  return () => (made ??= make());
};

/** Autobahn's data sets in the order of its sections 12.1 to 12.5 (13.x all use the JSON one). */
export const CORPORA: readonly Corpus[] = [
  { name: 'json_data1', description: 'large JSON data file (utf8, 194056 bytes)', binary: false, data: lazily(jsonData) },
  { name: 'lena512', description: 'Lena picture, bitmap 512x512 bw (binary, 263222 bytes)', binary: true, data: lazily(bitmapData) },
  { name: 'gutenberg_faust', description: "human readable text, Goethe's Faust I (German) (binary, 222218 bytes)", binary: true, data: lazily(faustData) },
  { name: 'html_data1', description: 'large HTML file (utf8, 263527 bytes)', binary: false, data: lazily(htmlData) },
  { name: 'ooms', description: 'a larger PDF (binary, 1042328 bytes)', binary: true, data: lazily(pdfData) },
];
