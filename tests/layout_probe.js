// Run in the report page once it has loaded: finds text laid over other text or images, words
// broken inside, and a page wider than the window; writes the findings as JSON into a
// pre element (id layout-probe) for `chromium --dump-dom` to return.
window.addEventListener("load", () => {
  const texts = [];   // one box per line of each text node: [left, top, right, bottom, text]
  const broken = [];  // words whose letters sit on two lines
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const value = node.nodeValue;
    if (!value.trim() || node.parentElement.closest("script,style,#layout-probe")) continue;
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width > 0.5 && r.height > 0.5) texts.push([r.left, r.top, r.right, r.bottom, value.trim().slice(0, 40)]);
    }
    for (const m of value.matchAll(/[\p{L}\p{N}_%]+(?:[.,][\p{L}\p{N}_%]+)*/gu)) {
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0.5).map(r => Math.round(r.top)));
      if (tops.size > 1) broken.push(m[0]);
    }
  }
  const images = Array.from(document.images).map(img => {
    const r = img.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom, "<img " + (img.alt || "") + ">"];
  }).filter(b => b[2] - b[0] > 0.5);
  const boxes = texts.concat(images).map(b => [b[0] + window.scrollX, b[1] + window.scrollY, b[2] + window.scrollX,
                                               b[3] + window.scrollY, b[4]]);
  boxes.sort((a, b) => a[1] - b[1]);
  const overlaps = [];
  const slack = 1;  // boxes of neighbouring lines may touch
  for (let i = 0; i < boxes.length; i++) {
    const a = boxes[i];
    for (let j = i + 1; j < boxes.length && boxes[j][1] < a[3] - slack; j++) {
      const b = boxes[j];
      if (Math.min(a[2], b[2]) - Math.max(a[0], b[0]) > slack && Math.min(a[3], b[3]) - Math.max(a[1], b[1]) > slack) {
        overlaps.push([a[4], b[4]]);
      }
    }
  }
  const figures = Array.from(document.images).filter(img => img.alt === "figure")
    .map(img => img.getBoundingClientRect().width / img.naturalWidth);
  const wide = Array.from(document.body.querySelectorAll("*"))  // the innermost elements past the window's edge
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
    .filter(e => !Array.from(e.children).some(c => c.getBoundingClientRect().right > window.innerWidth + 1))
    .map(e => e.tagName.toLowerCase() + (e.className ? "." + e.className : "") + " " + (e.textContent || "").trim().slice(0, 30));
  const out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify({
    width: window.innerWidth, scroll_width: document.documentElement.scrollWidth, texts: texts.length,
    images: images.length, wide: wide.slice(0, 10), overlaps: overlaps.slice(0, 20), n_overlaps: overlaps.length,
    broken: broken.slice(0, 20), n_broken: broken.length, figure_scales: figures,
  });
  document.body.appendChild(out);
});
