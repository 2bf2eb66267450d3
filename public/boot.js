// Starts the app. A file of its own rather than an inline script: the
// server's Content-Security-Policy allows scripts from the site only.
//
// Anything that policy refuses is counted on <html data-csp-violations>
// (where the browser tests look) and said in the console, before the app
// is loaded, so nothing it does goes unseen.
let violations = 0;
document.addEventListener("securitypolicyviolation", (event) => {
  violations += 1;
  document.documentElement.dataset.cspViolations = String(violations);
  document.documentElement.dataset.cspLast =
    `${event.violatedDirective} ${event.blockedURI} ${event.sample}`;
  console.warn(
    `Content-Security-Policy refused ${event.blockedURI || "inline content"} (${event.violatedDirective})`,
  );
});
const { default: init } = await import("/trackside.js");
init();
