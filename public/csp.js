// Counts what the server's Content-Security-Policy refuses, on
// <html data-csp-violations> (where the browser tests look), and says it in
// the console. A classic script loaded first by every page, so nothing a
// page does later goes unseen.
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
