// The Lounge for `cargo xtask lounge`: public (no accounts), nothing stored, the network locked
// to chat-server's IRC listener. xtask fills in the ports.
"use strict";
module.exports = {
  public: true,
  host: "127.0.0.1",
  port: LOUNGE_PORT,
  reverseProxy: false,
  prefetch: false,
  fileUpload: { enable: false },
  messageStorage: [],
  lockNetwork: true,
  defaults: {
    name: "chat",
    host: "127.0.0.1",
    port: IRC_PORT,
    password: "",
    tls: false,
    rejectUnauthorized: false,
    nick: "lounger",
    username: "lounger",
    realname: "Lounge User",
    join: "#lobby",
    leaveMessage: "",
  },
};
