package dev.egressproxy.check;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.ObjectReadContext;
import tools.jackson.core.json.JsonFactory;

/**
 * The credentials of a containers {@code auth.json} ({@code podman login}, {@code skopeo login}):
 * {@code {"auths": {"registry.redhat.io": {"auth": "base64(user:password)"}}}}. Only the
 * {@code auth} field is read; credential helpers are not run.
 */
final class AuthFile {

    private final Map<String, String> auths;

    private AuthFile(Map<String, String> auths) {
        this.auths = auths;
    }

    static AuthFile none() {
        return new AuthFile(Map.of());
    }

    static AuthFile read(Path file) throws IOException {
        Map<String, String> auths = new LinkedHashMap<>();
        try (JsonParser p = new JsonFactory().createParser(ObjectReadContext.empty(), Files.readAllBytes(file))) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new IOException(file + " is not a JSON object");
            }
            while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                String name = p.currentName();
                p.nextToken();
                if (!name.equals("auths") || p.currentToken() != JsonToken.START_OBJECT) {
                    p.skipChildren();
                    continue;
                }
                while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                    String registry = p.currentName();
                    p.nextToken();
                    if (p.currentToken() != JsonToken.START_OBJECT) {
                        p.skipChildren();
                        continue;
                    }
                    while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                        String field = p.currentName();
                        p.nextToken();
                        if (field.equals("auth") && p.currentToken() == JsonToken.VALUE_STRING) {
                            auths.put(key(registry), p.getString());
                        } else {
                            p.skipChildren();
                        }
                    }
                }
            }
        } catch (tools.jackson.core.JacksonException e) {
            throw new IOException(file + " is not valid JSON: " + e.getOriginalMessage());
        }
        return new AuthFile(auths);
    }

    /** {@code https://registry.example/v1/} and {@code docker.io} as the registry host they stand for. */
    private static String key(String registry) {
        String r = registry.replaceFirst("^https?://", "");
        int slash = r.indexOf('/');
        if (slash >= 0) {
            r = r.substring(0, slash);
        }
        return r.equals("docker.io") || r.equals("index.docker.io") ? "registry-1.docker.io" : r;
    }

    /** The {@code Basic} credentials for {@code registry} (its base64 {@code user:password}), or null. */
    String basic(String registry) {
        return auths.get(key(registry));
    }
}
