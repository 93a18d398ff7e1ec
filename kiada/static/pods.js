// One colour per pod from its name: the same function as kiada/src/view/colour.rs (32-bit FNV-1a
// of the UTF-8 bytes, mixed with murmur3's finaliser; hue 25 to 334, three lightness levels),
// so a pod has one colour on every page.
"use strict";

window.kiadaPodColour = function (name) {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(name)) {
    h = Math.imul((h ^ byte) >>> 0, 0x01000193) >>> 0;
  }
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  const hue = 25 + ((h >>> 6) % 310);
  const lightness = 34 + ((h >>> 16) % 3) * 10;
  return "hsl(" + hue + ", 65%, " + lightness + "%)";
};
