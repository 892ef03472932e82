// sori live page — the transcript as a file: the .txt and .srt buttons (#download-txt,
// #download-srt), and the texts they save.

import { $, clockSeconds, h, pad, srtTime } from './util.js';
import { absEnd, absStart, sortedFinals } from './segments.js';

let txtButton = null;
let srtButton = null;

export function initDownloads() {
  txtButton = $('download-txt');
  srtButton = $('download-srt');
  txtButton.addEventListener('click', () =>
    saveFile(`sori-${fileStamp()}.txt`, transcriptText(), 'text/plain;charset=utf-8'));
  srtButton.addEventListener('click', () =>
    saveFile(`sori-${fileStamp()}.srt`, transcriptSrt(), 'application/x-subrip;charset=utf-8'));
}

/** The buttons work once there is a final to save. */
export function setDownloadsEnabled(enabled) {
  txtButton.disabled = !enabled;
  srtButton.disabled = !enabled;
}

const oneLine = (text) => text.replace(/\s+/g, ' ').trim();

export function transcriptText() {
  return sortedFinals().map((s) => `[${clockSeconds(absStart(s))}] ${oneLine(s.text)}\n`).join('');
}

export function transcriptSrt() {
  return sortedFinals()
    .map((s, i) => `${i + 1}\n${srtTime(absStart(s))} --> ${srtTime(absEnd(s))}\n${oneLine(s.text)}\n\n`)
    .join('');
}

function fileStamp() {
  const d = new Date();
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

function saveFile(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // Revoking at once can cancel the download in some browsers.
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
