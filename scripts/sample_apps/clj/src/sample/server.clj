(ns sample.server
  "The JVM sample app: an HTTP server (the JDK's own) backed by PostgreSQL.

  GET /health  200 when the database answers a query, else 503
  GET /        the version, the colour and what it reads from the items table
  GET /version the version

  The port is config.edn's :http-port (as a Triangulum app's config names
  it), unless PORT is set (compose sets it). DATABASE_URL comes from the
  environment (the app's env file). SIGTERM: finish the requests in
  flight (up to 5 s), close, exit."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [sample.db :as db])
  (:import (com.sun.net.httpserver HttpExchange HttpHandler HttpServer)
           (java.net InetSocketAddress)
           (java.util.concurrent Executors)))

(def config (edn/read-string (slurp (io/file "config.edn"))))
(def version (:version config))
(def colour (or (System/getenv "BLUEGREEN_COLOUR") "none"))

(def ^:private conn (atom nil))
(def ^:private in-flight (atom 0))

(defn- query
  "Run f on the shared connection; a broken connection is replaced once."
  [f]
  (locking conn
    (try
      (when-not (some-> @conn (.isValid 2)) (reset! conn (db/connect)))
      (f @conn)
      (catch Exception e
        (some-> @conn .close)
        (reset! conn nil)
        (throw e)))))

(defn- rows [sql]
  (query (fn [c]
           (with-open [st (.createStatement c)
                       rs (.executeQuery st sql)]
             (let [n (.getColumnCount (.getMetaData rs))]
               (loop [out []]
                 (if (.next rs)
                   (recur (conj out (mapv #(.getObject rs (int %)) (range 1 (inc n)))))
                   out)))))))

(defn- respond [^HttpExchange ex status ^String body]
  (let [bytes (.getBytes body "UTF-8")]
    (doto (.getResponseHeaders ex)
      (.set "Content-Type" "text/plain; charset=utf-8")
      (.set "X-App-Version" version))
    (.sendResponseHeaders ex status (alength bytes))
    (with-open [out (.getResponseBody ex)]
      (.write out bytes))))

(defn- handle [^HttpExchange ex]
  (swap! in-flight inc)
  (try
    (case (.getPath (.getRequestURI ex))
      "/health" (try
                  (rows "SELECT 1")
                  (respond ex 200 "ok\n")
                  (catch Exception e
                    (respond ex 503 (str "database: " (.getMessage e) "\n"))))
      "/version" (respond ex 200 (str version "\n"))
      "/" (let [items (rows (:items-query config))]
            (respond ex 200 (str "sample app " version " (" colour ", clojure): "
                                 (count items) " items " (pr-str items) "\n")))
      (respond ex 404 "not found\n"))
    (catch Exception e
      (respond ex 500 (str "error: " (.getMessage e) "\n")))
    (finally
      (.close ex)
      (swap! in-flight dec))))

(defn- stop
  "Finish the requests in flight (up to 5 s), then close. JDK 17's
  HttpServer.stop(delay) waits the whole delay even when nothing is in
  flight, so the wait is ours and stop gets 0."
  [^HttpServer server]
  (println (str "sample app: SIGTERM, " @in-flight " request(s) in flight"))
  (let [deadline (+ (System/currentTimeMillis) 5000)]
    (while (and (pos? @in-flight) (< (System/currentTimeMillis) deadline))
      (Thread/sleep 10)))
  (.stop server 0))

(defn -main [& _]
  (let [port (Integer/parseInt (or (System/getenv "PORT") (str (:http-port config))))
        server (HttpServer/create (InetSocketAddress. port) 128)]
    (.createContext server "/" (reify HttpHandler (handle [_ ex] (handle ex))))
    (.setExecutor server (Executors/newFixedThreadPool 8))
    (.addShutdownHook (Runtime/getRuntime)
                      (Thread. #(stop server)))
    (.start server)
    (println (str "sample app " version " (" colour ") listening on port " port))))
