// Starts the app. A file of its own rather than an inline script: the
// server's Content-Security-Policy allows scripts from the site only.
//
// What that policy refuses is counted by csp.js, loaded before this.
const { default: init } = await import("/trackside.js");
init();
