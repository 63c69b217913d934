// Swagger UI on this service's own schema; a file, not an inline script, so the page keeps script-src 'self'.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null, // never send the schema to swagger.io's validator
  persistAuthorization: false,
});
