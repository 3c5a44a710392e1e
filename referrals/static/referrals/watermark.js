/* The viewer's watermark: tiles the line in data-watermark (the viewer's name, institution
 * and the time, written by the server) across the image area as an SVG background, set
 * through the style object (the CSP allows no style attribute in the page). The text is
 * escaped for XML; it never becomes markup of the page.
 */
(function () {
  "use strict";

  function xml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&apos;");
  }

  function textWidth(text) {
    // At 14px: about 8px a Latin letter, a full square for a CJK character.
    var px = 0;
    for (var i = 0; i < text.length; i++) { px += text.charCodeAt(i) >= 0x2e80 ? 14 : 8; }
    return px;
  }

  function tile(text) {
    // One line tilted 30° per tile, the tile just larger than the line: a dense diagonal tiling.
    var px = textWidth(text);
    var width = Math.round(px * 0.87) + 60;
    var height = Math.round(px * 0.5) + 60;
    var svg = '<svg xmlns="http://www.w3.org/2000/svg" width="' + width + '" height="' + height + '">' +
      '<text x="50%" y="50%" text-anchor="middle" dominant-baseline="middle" ' +
      'transform="rotate(-30 ' + width / 2 + " " + height / 2 + ')" ' +
      'font-family="sans-serif" font-size="14" fill="#ffffff" fill-opacity="0.25" ' +
      'stroke="#000000" stroke-opacity="0.15" stroke-width="0.5">' + xml(text) + "</text></svg>";
    return 'url("data:image/svg+xml,' + encodeURIComponent(svg) + '")';
  }

  var layers = document.querySelectorAll(".viewer-watermark[data-watermark]");
  for (var i = 0; i < layers.length; i++) {
    var text = layers[i].getAttribute("data-watermark");
    if (text) { layers[i].style.backgroundImage = tile(text); }
  }
})();
