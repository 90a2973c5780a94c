(ns sample.migrate
  "Migrations, run by PRE_SWITCH_CMD in the new colour's container before the
  switch: every migrations/NNN-*.sql not yet in schema_migrations, in name
  order, each in its own transaction. A failing file is rolled back and the
  command exits 1, so the release aborts and nothing live changes."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [sample.db :as db]))

(defn- applied [conn]
  (with-open [st (.createStatement conn)]
    (.execute st (str "CREATE TABLE IF NOT EXISTS schema_migrations "
                      "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"))
    (with-open [rs (.executeQuery st "SELECT name FROM schema_migrations")]
      (loop [names #{}]
        (if (.next rs) (recur (conj names (.getString rs 1))) names)))))

(defn- migration-files []
  (->> (.listFiles (io/file "migrations"))
       (filter #(str/ends-with? (.getName %) ".sql"))
       (sort-by #(.getName %))))

(defn- apply-one [conn file]
  (.setAutoCommit conn false)
  (try
    (with-open [st (.createStatement conn)]
      (.execute st (slurp file))
      (with-open [ps (.prepareStatement conn "INSERT INTO schema_migrations (name) VALUES (?)")]
        (.setString ps 1 (.getName file))
        (.executeUpdate ps)))
    (.commit conn)
    (catch Exception e
      (.rollback conn)
      (throw e))
    (finally (.setAutoCommit conn true))))

(defn -main [& _]
  (try
    (with-open [conn (db/connect)]
      (let [done (applied conn)
            todo (remove #(done (.getName %)) (migration-files))]
        (println (str "migrate: " (count done) " applied before, " (count todo) " to apply"))
        (doseq [f todo]
          (println (str "migrate: " (.getName f)))
          (flush)
          (apply-one conn f))
        (println "migrate: done")))
    (shutdown-agents)
    (System/exit 0)
    (catch Exception e
      (binding [*out* *err*]
        (println (str "migrate: failed: " (.getMessage e))))
      (System/exit 1))))
