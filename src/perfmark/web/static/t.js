/* perfmark first-party snippet: keeps the click id, UTMs and referrer in a first-party
   cookie, sends page views, and offers perfmark.track(goal, props) and
   perfmark.identify(customerId). No dependencies. Configure with data- attributes:
   <script src="https://TRACKER/t.js" data-write-key="wk_..." data-consent="required"
           data-cookie-days="90" data-param="pm_clid" async></script>
   With data-consent="required" no cookie is set until perfmark.consent(true). */
(function (w, d) {
  "use strict";
  var s = d.currentScript || d.querySelector("script[data-write-key]");
  if (!s || w.perfmark && w.perfmark._v) return;
  var ds = s.dataset || {}, key = ds.writeKey, param = ds.param || "pm_clid",
    days = parseInt(ds.cookieDays || "90", 10), needConsent = ds.consent === "required",
    api = ds.api || s.src.replace(/\/t\.js.*$/, ""), CK = "_pm", queue = w.perfmark && w.perfmark.q || [],
    consent = !needConsent, state = {};
  function rnd() {
    var a = new Uint8Array(12); (w.crypto || w.msCrypto).getRandomValues(a);
    for (var i = 0, o = ""; i < a.length; i++) o += (a[i] + 256).toString(16).slice(1);
    return "v" + o;
  }
  function readCookie() {
    var m = d.cookie.match(new RegExp("(?:^|; )" + CK + "=([^;]*)"));
    if (!m) return {};
    try { return JSON.parse(decodeURIComponent(m[1])); } catch (e) { return {}; }
  }
  function save() {
    if (!consent) return;
    d.cookie = CK + "=" + encodeURIComponent(JSON.stringify(state)) + "; Max-Age=" + days * 86400 +
      "; Path=/; SameSite=Lax" + (location.protocol === "https:" ? "; Secure" : "");
  }
  function qs(name) {
    var m = location.search.match(new RegExp("[?&]" + name + "=([^&#]*)"));
    return m ? decodeURIComponent(m[1].replace(/\+/g, " ")) : null;
  }
  state = readCookie();
  if (!state.vid) state.vid = rnd();
  var clid = qs(param), utm = {}, names = ["source", "medium", "campaign", "term", "content"], hasUtm = false;
  for (var i = 0; i < names.length; i++) {
    var v = qs("utm_" + names[i]);
    if (v) { utm[names[i] === "campaign" ? "name" : names[i]] = v; hasUtm = true; }
  }
  if (clid) state.clid = clid;
  if (hasUtm) state.utm = utm;
  if (d.referrer && d.referrer.indexOf(location.host) < 0) state.ref = d.referrer;
  save();
  function send(path, msg) {
    msg.writeKey = key;
    msg.anonymousId = state.vid;
    if (state.uid) msg.userId = state.uid;
    msg.messageId = rnd().slice(1);
    msg.timestamp = new Date().toISOString();
    msg.context = { page: { url: location.href, referrer: d.referrer, title: d.title },
      campaign: state.utm || {}, click_id: state.clid || null, userAgent: navigator.userAgent,
      locale: navigator.language };
    var body = JSON.stringify(msg), url = api + "/v1/" + path;
    if (navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], { type: "text/plain" }))) return;
    var x = new XMLHttpRequest(); x.open("POST", url, true); x.setRequestHeader("Content-Type", "text/plain"); x.send(body);
  }
  var pm = {
    _v: 1,
    page: function (name, props) { send("page", { name: name || d.title, properties: props || {} }); },
    track: function (goal, props) { props = props || {}; if (state.clid && !props.click_id) props.click_id = state.clid; send("track", { event: goal, properties: props }); },
    identify: function (customerId, traits) { state.uid = String(customerId); save(); send("identify", { userId: state.uid, traits: traits || {} }); },
    consent: function (given) { consent = !!given; if (consent) save(); else d.cookie = CK + "=; Max-Age=0; Path=/"; },
    clickId: function () { return state.clid || null; }
  };
  w.perfmark = pm;
  for (var j = 0; j < queue.length; j++) pm[queue[j][0]].apply(pm, [].slice.call(queue[j], 1));
  if (ds.autoPage !== "false") pm.page();
})(window, document);
