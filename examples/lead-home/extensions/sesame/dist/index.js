// Stand-in for the Sesame channel plugin: it owns the `sesame` channel id so
// OpenClaw accepts `channels.sesame`, and logs the line the provisioner's health
// check looks for. It talks to no server.
export default {
  id: "sesame",
  name: "Sesame",
  description: "Stand-in for the Sesame channel plugin",
  register(api) {
    const channel = api?.config?.channels?.sesame;
    if (channel?.enabled !== false && channel?.apiKey) {
      console.log("[sesame] Authenticated successfully");
    } else {
      console.log("[sesame] channel not configured");
    }
  },
};
