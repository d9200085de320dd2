"""The page's style sheet and its few lines of plain JavaScript, embedded in the file.

The script only adds to a page that is complete without it: sort buttons on
the item table's headers, the filter box, and the CSV download of the rows
shown. With JavaScript off, the controls stay hidden and the whole table
reads as it is.
"""

#: Rows of the item table shown at once with JavaScript on: laying out 20,000 rows takes seconds, at
#: every sort and every keystroke. Without JavaScript every row is shown.
ROWS_PER_PAGE = 250
#: Runs in the head, before the table is laid out, so that only the first page ever is; ``SCRIPT`` takes over.
EARLY_SCRIPT = "document.documentElement.classList.add('paged')"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;margin:0;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:1em 1.5em 4em;background:#fff}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{font-size:1.25em;margin:2em 0 .5em;border-bottom:2px solid #dde;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.4em 0 .4em}
nav{position:sticky;top:0;background:#f2f4f8;padding:.4em .8em;border-bottom:1px solid #dde;z-index:2;font-size:.95em}
nav a{margin-right:1.1em;color:#244f8f;text-decoration:none}nav a:hover{text-decoration:underline}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border-bottom:1px solid #e3e3e8;padding:.22em .6em;text-align:left;vertical-align:top}
th{background:#f2f4f8;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.facts th{background:none;font-weight:normal;color:#555;width:16em}
.status{display:inline-block;padding:.05em .55em;border-radius:.7em;font-weight:600;color:#fff;background:#777}
.status.succeeded{background:#2e7d32}.status.failed,.status.abandoned{background:#b3261e}.status.skipped{background:#8a6d00}
.verdicts{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:.8em;margin:1em 0}
.verdict{border:1px solid #dde;border-left:5px solid #2e7d32;border-radius:4px;padding:.5em .8em;background:#fcfdfc}
.verdict.warn{border-left-color:#d1772a;background:#fffaf3}.verdict.bad{border-left-color:#b3261e;background:#fff6f5}
.verdict h3{margin:0 0 .3em;font-size:1em}.verdict p{margin:.2em 0}
.note{background:#fff7e0;border:1px solid #f0d890;border-radius:4px;padding:.5em .8em}
.quiet{color:#666}figure{display:inline-block;margin:.4em 1.2em .8em 0;vertical-align:top}
figcaption{font-size:.9em;color:#444;max-width:460px}.small figcaption{max-width:300px}
.scroll{max-height:32em;overflow:auto;border:1px solid #e3e3e8}
.scroll thead th{position:sticky;top:0;z-index:1}
#item-controls:not([hidden]){display:flex}#item-controls{margin:.4em 0;gap:1em;align-items:center;flex-wrap:wrap}
.paged #item-table tbody tr:nth-child(n+%(first_hidden)d){display:none}
#item-table{table-layout:fixed}#item-table td{overflow-wrap:anywhere}
#item-controls input[type=search]{width:22em;padding:.3em}
th button{font:inherit;background:none;border:0;padding:0;cursor:pointer;color:#244f8f;white-space:normal;text-align:inherit}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
td.flags{color:#8a3b12;max-width:26em}
@media print{nav,#item-controls{display:none}.scroll{max-height:none;overflow:visible}}
""" % {"first_hidden": ROWS_PER_PAGE + 1}


SCRIPT = """
(function () {
  var table = document.getElementById('item-table');
  if (!table) return;
  var PAGE = %(page)d, limit = PAGE, matching = [];
  var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var filter = document.getElementById('item-filter'), flaggedOnly = document.getElementById('item-flagged');
  var shown = document.getElementById('item-shown'), more = document.getElementById('item-more');
  document.getElementById('item-controls').hidden = false;
  document.getElementById('item-howto').hidden = false;
  function key(row, column) {
    var text = row.cells[column].textContent, number = parseFloat(text.replace(/,/g, ''));
    return isNaN(number) ? null : number;
  }
  function show() {  /* the first `limit` matching rows, in the current order */
    var on = new Set(matching.slice(0, limit));
    rows.forEach(function (row) { row.hidden = !on.has(row); });
    var n = Math.min(limit, matching.length);
    shown.textContent = matching.length.toLocaleString('en') + ' of ' + rows.length.toLocaleString('en') +
      ' items match' + (n < matching.length ? '; the first ' + n.toLocaleString('en') + ' shown' : '');
    more.hidden = n >= matching.length;
    more.textContent = 'Show ' + Math.min(PAGE, matching.length - n).toLocaleString('en') + ' more';
  }
  function apply() {
    var terms = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), only = flaggedOnly.checked;
    matching = rows.filter(function (row) {
      var id = row.cells[0].textContent, flags = row.cells[1].textContent.toLowerCase();
      /* a kept anchor is not a problem: flagged means a flag other than 'anchor' */
      var flagged = flags.split(', ').some(function (f) { return f !== '' && f !== 'anchor'; });
      return (!only || flagged) && terms.every(function (t) {
        return id.indexOf(t) === 0 || flags.indexOf(t) >= 0;
      });
    });
    limit = PAGE;
    show();
  }
  heads.forEach(function (head, column) {
    var button = document.createElement('button');
    button.type = 'button';
    button.textContent = head.textContent;
    head.textContent = '';
    head.appendChild(button);
    button.addEventListener('click', function () {
      var descending = head.getAttribute('aria-sort') === 'ascending';
      heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
      head.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      var text = column === 1, sign = descending ? -1 : 1;
      var keyed = rows.map(function (row, i) {
        var k = text ? row.cells[1].textContent : key(row, column);
        return [k === '' ? null : k, i, row];
      });
      keyed.sort(function (p, q) {
        if (p[0] === q[0]) return p[1] - q[1];
        if (p[0] === null) return 1;  /* blanks last, either way */
        if (q[0] === null) return -1;
        return (p[0] < q[0] ? -1 : 1) * sign;
      });
      rows = keyed.map(function (k) { return k[2]; });
      var fragment = document.createDocumentFragment();
      rows.forEach(function (row) { fragment.appendChild(row); });
      body.appendChild(fragment);
      var matched = new Set(matching);
      matching = rows.filter(function (row) { return matched.has(row); });
      show();
    });
  });
  function cell(text) { return /[",\\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text; }
  document.getElementById('item-csv').addEventListener('click', function () {
    var lines = [heads.map(function (h) { return cell(h.textContent); }).join(',')];
    var exactById = {};  /* numbers at full precision (the table's data-exact), not as displayed */
    (table.getAttribute('data-exact') || '').split(';').forEach(function (entry) {
      var values = entry.split(' ');
      exactById[values[0]] = values.slice(1);
    });
    matching.forEach(function (row) {
      var exact = exactById[row.cells[0].textContent.replace(/,/g, '')];
      lines.push(Array.prototype.map.call(row.cells, function (c, k) {
        if (exact && k >= 2) return exact[k - 2];
        return cell(c.textContent.replace(/,(?=\\d{3}\\b)/g, ''));
      }).join(','));
    });
    var link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([lines.join('\\n') + '\\n'], {type: 'text/csv'}));
    link.download = table.getAttribute('data-csv-name');
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  more.addEventListener('click', function () { limit += PAGE; show(); });
  filter.addEventListener('input', apply);
  flaggedOnly.addEventListener('change', apply);
  apply();
  document.documentElement.classList.remove('paged');
})();
""" % {"page": ROWS_PER_PAGE}
