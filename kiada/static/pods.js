// One colour per pod from its name: the same function as kiada/src/colour.rs (32-bit FNV-1a
// of the UTF-8 bytes, hue = hash mod 360), so a pod has one colour on every page.
"use strict";

window.kiadaPodColour = function (name) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(name)) {
    hash = Math.imul((hash ^ byte) >>> 0, 0x01000193) >>> 0;
  }
  return "hsl(" + (hash % 360) + ", 65%, 42%)";
};
