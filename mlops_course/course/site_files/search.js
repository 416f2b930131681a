(function () {
  "use strict";
  var INDEX = window.COURSE_SEARCH_INDEX || [];

  function terms(query) {
    return query.toLowerCase().split(/\s+/).filter(function (t) { return t.length > 0; });
  }
  function count(text, term) {
    var n = 0, at = text.indexOf(term);
    while (at >= 0 && n < 50) { n += 1; at = text.indexOf(term, at + term.length); }
    return n;
  }
  // Entries that contain every term, best first: title hits weigh most, then how often the terms occur.
  function search(query) {
    var wanted = terms(query), hits = [];
    if (!wanted.length) { return hits; }
    INDEX.forEach(function (entry) {
      var title = (entry.page + " " + entry.title).toLowerCase(), text = entry.text.toLowerCase(), score = 0;
      for (var i = 0; i < wanted.length; i += 1) {
        var inTitle = title.indexOf(wanted[i]) >= 0, n = count(text, wanted[i]);
        if (!inTitle && !n) { return; }
        score += (inTitle ? 20 : 0) + n;
      }
      hits.push({ entry: entry, score: score });
    });
    hits.sort(function (a, b) { return b.score - a.score; });
    return hits.map(function (h) { return h.entry; });
  }
  // About 160 characters around the first term, cut at spaces.
  function snippet(text, query) {
    var first = terms(query)[0] || "", at = Math.max(0, text.toLowerCase().indexOf(first));
    var start = at > 60 ? text.indexOf(" ", at - 60) + 1 : 0, end = text.indexOf(" ", start + 160);
    if (end < 0) { end = text.length; }
    return (start > 0 ? "… " : "") + text.slice(start, end) + (end < text.length ? " …" : "");
  }
  function hitLink(entry, query) {
    var a = document.createElement("a"), title = document.createElement("span"),
        page = document.createElement("span"), text = document.createElement("span");
    a.href = entry.url;
    title.className = "hit-title"; title.textContent = entry.title;
    page.className = "hit-page"; page.textContent = entry.title === entry.page ? "" : " · " + entry.page;
    text.className = "hit-text"; text.textContent = snippet(entry.text, query);
    a.appendChild(title); a.appendChild(page); a.appendChild(text);
    return a;
  }
  function fill(box, query, limit) {
    var hits = search(query).slice(0, limit);
    box.textContent = "";
    if (!hits.length) {
      var none = document.createElement("div");
      none.className = "search-empty"; none.textContent = "No match for “" + query + "”.";
      box.appendChild(none);
    }
    hits.forEach(function (entry) { box.appendChild(hitLink(entry, query)); });
    return hits.length;
  }

  var input = document.getElementById("search-input"), box = document.getElementById("search-results");
  if (input && box) {
    input.addEventListener("input", function () {
      var query = input.value.trim();
      if (!query) { box.hidden = true; return; }
      fill(box, query, 8);
      box.hidden = false;
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { box.hidden = true; input.blur(); }
    });
    document.addEventListener("click", function (event) {
      if (!box.contains(event.target) && event.target !== input) { box.hidden = true; }
    });
  }

  var list = document.getElementById("search-page-results");
  if (list) {
    var query = (new URLSearchParams(window.location.search).get("q") || "").trim();
    var summary = document.getElementById("search-summary");
    if (input) { input.value = query; }
    if (query) {
      var hits = search(query);
      summary.textContent = hits.length + " section(s) match “" + query + "”.";
      hits.forEach(function (entry) {
        var li = document.createElement("li");
        li.appendChild(hitLink(entry, query));
        list.appendChild(li);
      });
    }
  }
  window.courseSearch = search;
})();
