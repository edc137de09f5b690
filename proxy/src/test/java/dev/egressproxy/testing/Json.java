package dev.egressproxy.testing;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.json.JsonFactory;

/**
 * Parses a JSON document with Jackson's streaming parser into plain Java values: objects become
 * {@code Map<String, Object>} (in document order), arrays {@code List<Object>}, numbers {@code Long}
 * or {@code Double}, and {@code null} stays null. Fails on anything that is not one whole document.
 */
public final class Json {

    private static final JsonFactory FACTORY = JsonFactory.builder().build();

    private Json() {
    }

    public static Object parse(String text) {
        try (JsonParser p = FACTORY.createParser(text)) {
            Object value = value(p, p.nextToken());
            if (p.nextToken() != null) {
                throw new IllegalArgumentException("text after the JSON document");
            }
            return value;
        }
    }

    /** The document, which must be an object. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> object(String text) {
        return (Map<String, Object>) parse(text);
    }

    /** The value at a path of object keys and array indexes, e.g. {@code at(doc, "config", "last_reload", "result")}. */
    public static Object at(Object doc, Object... path) {
        Object v = doc;
        for (Object step : path) {
            if (step instanceof Integer i) {
                v = ((List<?>) v).get(i);
            } else {
                Map<?, ?> m = (Map<?, ?>) v;
                if (!m.containsKey(step)) {
                    throw new AssertionError("no field '" + step + "' in " + m.keySet());
                }
                v = m.get(step);
            }
        }
        return v;
    }

    private static Object value(JsonParser p, JsonToken t) {
        if (t == null) {
            throw new IllegalArgumentException("empty document");
        }
        return switch (t) {
            case START_OBJECT -> {
                Map<String, Object> m = new LinkedHashMap<>();
                for (JsonToken n = p.nextToken(); n != JsonToken.END_OBJECT; n = p.nextToken()) {
                    String name = p.currentName();
                    if (m.containsKey(name)) {
                        throw new IllegalArgumentException("duplicate field " + name);
                    }
                    m.put(name, value(p, p.nextToken()));
                }
                yield m;
            }
            case START_ARRAY -> {
                List<Object> l = new ArrayList<>();
                for (JsonToken n = p.nextToken(); n != JsonToken.END_ARRAY; n = p.nextToken()) {
                    l.add(value(p, n));
                }
                yield l;
            }
            case VALUE_STRING -> p.getString();
            case VALUE_NUMBER_INT -> p.getLongValue();
            case VALUE_NUMBER_FLOAT -> p.getDoubleValue();
            case VALUE_TRUE -> true;
            case VALUE_FALSE -> false;
            case VALUE_NULL -> null;
            default -> throw new IllegalArgumentException("unexpected " + t);
        };
    }
}
